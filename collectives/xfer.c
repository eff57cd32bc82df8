/* collectives/xfer.c — moving the shared state at a sync point (ft_impl.h), on the caller's
 * thread while the group waits.
 *
 * A plan names the receivers (joiners, repaired members), which buffers each needs (a mask),
 * and the senders (members holding the majority's state). A receiver's selected buffers,
 * concatenated in index order, are cut into n = min(senders * streams, bytes / 256 KiB) stripes;
 * stripe j comes from sender j mod S over its own TCP connection, so a receiver reads from every
 * sender over several streams at once (a joiner's download is not limited to one stream's
 * window, nor to one sender's uplink).
 *
 *   receiver -> sender   connection kind STATE (authenticated), then XFER_REQ {round, receiver,
 *                        stripe, n}; the sender recomputes the stripe's bytes from the plan and
 *                        trusts nothing else
 *   sender -> receiver   XFER_DATA frames {chunk = buffer, seq = offset, length} in order, never
 *                        crossing a buffer, written straight from the sender's buffers and read
 *                        straight into the receiver's (a MAC per frame with integrity)
 *
 * The receiver then hashes every buffer it received and compares with the majority's digests
 * from the plan: a mismatch fails the round (the coordinator plans another). The sender gates
 * its writes through the link emulator when the run emulates links, so WAN conditions apply to
 * state transfer too. A newer plan stops both sides.
 */
#define _GNU_SOURCE
#include "collectives/ft_impl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MIN_STRIPE (256u << 10)
#define FRAME_MAX (1u << 20)

void loco_state_digests(const loco_state_buffer *state, int nstate, uint64_t *digests)
{
    for (int b = 0; b < nstate; b++) {
        digests[b] = loco_hash64(state[b].ptr, state[b].bytes, 0);
    }
}

/* ---- geometry (the same on both ends) ------------------------------------------------------- */

typedef struct selection {
    int n;
    int buf[LOCO_STATE_MAX_BUFFERS];        /* selected buffer indices, ascending */
    uint64_t start[LOCO_STATE_MAX_BUFFERS]; /* offset of each in the concatenation */
    uint64_t total;
} selection;

static void sel_build(const loco_plan *p, const uint8_t *mask, selection *s)
{
    s->n = 0;
    s->total = 0;
    for (int b = 0; b < p->nbuf; b++) {
        if (loco_mask_has(mask, b) && p->bytes[b] > 0) {
            s->buf[s->n] = b;
            s->start[s->n] = s->total;
            s->total += p->bytes[b];
            s->n++;
        }
    }
}

/* Where concatenation offset pos lies: selected buffer k, offset inside it. */
static void sel_locate(const selection *s, uint64_t pos, int *k, uint64_t *off)
{
    int i = 0;
    while (i + 1 < s->n && s->start[i + 1] <= pos) {
        i++;
    }
    *k = i;
    *off = pos - s->start[i];
}

static uint32_t stripe_count(const loco_plan *p, uint64_t total)
{
    if (0 == total) {
        return 0;
    }
    uint64_t n = (uint64_t)p->n_send * p->streams;
    uint64_t by_size = (total + MIN_STRIPE - 1) / MIN_STRIPE;
    n = n < by_size ? n : by_size;
    return n < 1 ? 1 : (uint32_t)n;
}

static void stripe_range(uint64_t total, uint32_t n, uint32_t j, uint64_t *begin, uint64_t *end)
{
    *begin = (uint64_t)((unsigned __int128)total * j / n);
    *end = (uint64_t)((unsigned __int128)total * (j + 1) / n);
}

static int plan_rank_of(const loco_plan *p, uint32_t id)
{
    for (int r = 0; r < p->n; r++) {
        if (p->members[r].id == id) {
            return r;
        }
    }
    return -1;
}

static int plan_receiver_index(const loco_plan *p, uint32_t id)
{
    for (int i = 0; i < p->n_recv; i++) {
        if (p->receivers[i] == id) {
            return i;
        }
    }
    return -1;
}

static bool xfer_stop(loco_comm_t comm, uint64_t deadline_ns, loco_status *st, loco_error *err)
{
    if (loco_ftc_superseded(comm)) {
        *st = loco_error_set(err, LOCO_ERR_ABORTED, "state transfer stopped: the group was "
                                                    "re-planned");
        return true;
    }
    if (loco_now_ns() >= deadline_ns) {
        *st = loco_error_set(err, LOCO_ERR_TIMEOUT, "state transfer did not finish in time");
        return true;
    }
    return false;
}

/* ---- receiver ------------------------------------------------------------------------------- */

typedef struct rx_stream {
    int fd;
    loco_hs hs;
    int state;                /* 0 connecting, 1 handshake, 2 receiving, 3 done */
    uint32_t stripe;
    int sender;               /* rank in the plan */
    uint64_t pos, end;        /* cursor in the concatenation */
    uint8_t hdr[LOCO_FRAME_HEADER_BYTES];
    uint32_t hdr_got, got, len, tag_got;
    bool in_payload;
    uint8_t *dst;             /* where the current frame's payload goes */
    uint8_t tag[LOCO_FRAME_MAC_BYTES];
    loco_frame_mac tx_mac, rx_mac;
    uint64_t retry_ns;
} rx_stream;

static void rx_dial(loco_comm_t comm, const loco_plan *p, rx_stream *s)
{
    const loco_member *m = &p->members[s->sender];
    loco_error e = {0};
    s->fd = -1;
    loco_net_connect_start(m->host, m->port, &s->fd, &e);
    s->state = s->fd >= 0 ? 0 : -1;
    s->retry_ns = loco_now_ns() + 20000000ull;
    (void)comm;
}

/* A frame header arrived: check it is the next piece of this stripe, point dst at it. */
static loco_status rx_header(const loco_plan *p, const selection *sel,
                             const loco_state_buffer *state, rx_stream *s, loco_error *err)
{
    loco_frame_header h;
    loco_error e = {0};
    if (LOCO_OK != loco_frame_header_decode(s->hdr, FRAME_MAX, &h, &e)) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "state stream %u: %s", s->stripe, e.msg);
    }
    int k = 0;
    uint64_t off = 0;
    sel_locate(sel, s->pos, &k, &off);
    int b = sel->buf[k];
    uint64_t left = p->bytes[b] - off < s->end - s->pos ? p->bytes[b] - off : s->end - s->pos;
    if (LOCO_FRAME_XFER_DATA != h.type || h.chunk != (uint32_t)b || h.seq != off ||
        0 == h.length || h.length > left) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "state stream %u: %s frame for buffer %u offset %llu (%u bytes); "
                              "expected buffer %d offset %llu (up to %llu bytes)",
                              s->stripe, loco_frame_type_name(h.type), h.chunk,
                              (unsigned long long)h.seq, h.length, b, (unsigned long long)off,
                              (unsigned long long)left);
    }
    s->dst = (uint8_t *)state[b].ptr + off;
    s->len = h.length;
    s->got = s->tag_got = 0;
    s->in_payload = true;
    return LOCO_OK;
}

/* Read what arrived on a receiving stream. */
static loco_status rx_read(const loco_plan *p, const selection *sel,
                           const loco_state_buffer *state, rx_stream *s, uint64_t *bytes,
                           loco_error *err)
{
    for (int guard = 0; guard < 64 && 2 == s->state; guard++) {
        ssize_t n;
        if (!s->in_payload) {
            n = recv(s->fd, s->hdr + s->hdr_got, LOCO_FRAME_HEADER_BYTES - s->hdr_got, 0);
        } else if (s->got < s->len) {
            n = recv(s->fd, s->dst + s->got, s->len - s->got, 0);
        } else {
            n = recv(s->fd, s->tag + s->tag_got, LOCO_FRAME_MAC_BYTES - s->tag_got, 0);
        }
        if (n < 0 && (EAGAIN == errno || EINTR == errno)) {
            return LOCO_OK;
        }
        if (n <= 0) {
            return loco_error_set(err, LOCO_ERR_PEER_LOST, "state stream %u from rank %d: %s",
                                  s->stripe, s->sender, n < 0 ? strerror(errno) : "closed early");
        }
        if (!s->in_payload) {
            s->hdr_got += (uint32_t)n;
            if (s->hdr_got == LOCO_FRAME_HEADER_BYTES) {
                s->hdr_got = 0;
                LOCO_TRY(rx_header(p, sel, state, s, err));
            }
            continue;
        }
        if (s->got < s->len) {
            s->got += (uint32_t)n;
            *bytes += (uint64_t)n;
        } else {
            s->tag_got += (uint32_t)n;
        }
        if (s->got == s->len && (!s->rx_mac.on || LOCO_FRAME_MAC_BYTES == s->tag_got)) {
            if (s->rx_mac.on && !loco_frame_mac_check(&s->rx_mac, s->hdr, s->dst, s->len, s->tag)) {
                return loco_error_set(err, LOCO_ERR_AUTH, "state stream %u from rank %d failed "
                                                          "its integrity check",
                                      s->stripe, s->sender);
            }
            s->in_payload = false;
            s->pos += s->len;
            if (s->pos == s->end) {
                s->state = 3;
                close(s->fd);
                s->fd = -1;
            }
        }
    }
    return LOCO_OK;
}

static loco_status xfer_receive(loco_comm_t comm, const loco_plan *p, const uint8_t *mask,
                                const loco_state_buffer *state, int nstate, uint64_t deadline_ns,
                                loco_xfer_stats *stats, loco_error *err)
{
    selection sel;
    sel_build(p, mask, &sel);
    uint32_t n = stripe_count(p, sel.total);
    for (int b = 0; b < p->nbuf; b++) {
        if (loco_mask_has(mask, b) && (b >= nstate || state[b].bytes != p->bytes[b])) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "state buffer %d: %zu bytes here, %llu in "
                                                        "the group",
                                  b, b < nstate ? state[b].bytes : 0,
                                  (unsigned long long)p->bytes[b]);
        }
    }
    rx_stream *s = calloc((size_t)n + 1, sizeof *s);
    struct pollfd *pfd = calloc((size_t)n + 1, sizeof *pfd);
    if (NULL == s || NULL == pfd) {
        free(s);
        free(pfd);
        return LOCO_ERR_NOMEM;
    }
    int me = plan_rank_of(p, comm->my_id);
    for (uint32_t j = 0; j < n; j++) {
        s[j].stripe = j;
        s[j].sender = plan_rank_of(p, p->senders[j % (uint32_t)p->n_send]);
        stripe_range(sel.total, n, j, &s[j].pos, &s[j].end);
        if (s[j].sender < 0) {
            free(s);
            free(pfd);
            return loco_error_set(err, LOCO_ERR_PROTOCOL, "plan: sender %u is not a member",
                                  p->senders[j % (uint32_t)p->n_send]);
        }
        rx_dial(comm, p, &s[j]);
    }
    loco_status st = LOCO_OK;
    uint32_t done = 0;
    uint64_t t0 = loco_now_ns();
    while (LOCO_OK == st && done < n && !xfer_stop(comm, deadline_ns, &st, err)) {
        int np = 0;
        uint64_t now = loco_now_ns();
        for (uint32_t j = 0; j < n; j++) {
            if (-1 == s[j].state && now >= s[j].retry_ns) {
                rx_dial(comm, p, &s[j]);
            }
            short ev = 0 == s[j].state ? POLLOUT : (1 == s[j].state || 2 == s[j].state) ? POLLIN : 0;
            if (ev) {
                pfd[np++] = (struct pollfd){.fd = s[j].fd, .events = ev};
            }
        }
        poll(pfd, (nfds_t)np, 20);
        for (uint32_t j = 0; j < n && LOCO_OK == st; j++) {
            rx_stream *x = &s[j];
            if (0 == x->state) {
                struct pollfd q = {.fd = x->fd, .events = POLLOUT};
                if (1 != poll(&q, 1, 0)) {
                    continue;
                }
                int soerr = 0;
                socklen_t len = sizeof soerr;
                getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                if (0 != soerr) {
                    close(x->fd);
                    x->state = -1;
                    x->retry_ns = loco_now_ns() + 20000000ull;
                    continue;
                }
                loco_hello hello = {.nonce = comm->nonce, .from = (uint32_t)me,
                                    .to = (uint32_t)x->sender, .world = (uint32_t)p->n,
                                    .kind = LOCO_CONN_STATE, .streams = 1,
                                    .flags = comm->cfg.integrity ? LOCO_HELLO_INTEGRITY : 0};
                loco_hs_dial(&x->hs, x->fd, comm->key, p->epoch, &hello);
                x->state = 1;
            }
            if (1 == x->state) {
                loco_hs_result r = loco_hs_step(&x->hs, NULL, NULL);
                if (LOCO_HS_AGAIN == r) {
                    continue;
                }
                if (LOCO_HS_ERROR == r) {
                    close(x->fd);
                    x->fd = -1;
                    if (LOCO_ACK_RETRY != x->hs.code && LOCO_ERR_PEER_LOST != x->hs.status) {
                        st = loco_error_set(err, x->hs.status, "state stream %u to rank %d: %s",
                                            j, x->sender, x->hs.reason);
                        break;
                    }
                    x->state = -1;
                    x->retry_ns = loco_now_ns() + 20000000ull;
                    continue;
                }
                loco_frame_mac_init(&x->hs, true, comm->cfg.integrity, &x->tx_mac, &x->rx_mac);
                uint8_t req[LOCO_FRAME_HEADER_BYTES + LOCO_XFER_REQ_BYTES];
                loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION,
                                       .type = LOCO_FRAME_XFER_REQ, .epoch = p->epoch,
                                       .length = LOCO_XFER_REQ_BYTES};
                loco_frame_header_encode(&h, req);
                loco_xfer_req_encode(p->round, comm->my_id, j, n, req + LOCO_FRAME_HEADER_BYTES);
                if (LOCO_OK != loco_net_send_all(x->fd, req, sizeof req, deadline_ns, "sender",
                                                 err)) {
                    st = LOCO_ERR_PEER_LOST;
                    break;
                }
                x->state = 2;
            }
            if (2 == x->state) {
                st = rx_read(p, &sel, state, x, &stats->bytes_received, err);
                done += 3 == x->state;
            }
        }
    }
    for (uint32_t j = 0; j < n; j++) {
        if (s[j].fd >= 0) {
            close(s[j].fd);
        }
    }
    free(s);
    free(pfd);
    stats->seconds += (double)(loco_now_ns() - t0) * 1e-9;
    for (int k = 0; k < sel.n && LOCO_OK == st; k++) { /* verify against the majority */
        int b = sel.buf[k];
        uint64_t d = loco_hash64(state[b].ptr, state[b].bytes, 0);
        if (d != p->digests[b]) {
            st = loco_error_set(err, LOCO_ERR_CHECKSUM,
                                "state buffer '%s' received with digest %016llx, the group's is "
                                "%016llx",
                                state[b].name, (unsigned long long)d,
                                (unsigned long long)p->digests[b]);
        }
    }
    return st;
}

/* ---- sender --------------------------------------------------------------------------------- */

typedef struct tx_stream {
    int fd;
    int state;              /* 0 reading the request, 1 sending, 2 done */
    uint8_t req[LOCO_FRAME_HEADER_BYTES + LOCO_XFER_REQ_BYTES];
    uint32_t got;
    int recv_index;         /* receiver (index in plan.receivers) */
    int link;               /* its emulated link (index into links), or -1 */
    uint32_t stripe, nstripes;
    selection *sel;
    uint64_t pos, end;
    uint8_t hdr[LOCO_FRAME_HEADER_BYTES + LOCO_FRAME_MAC_BYTES];
    uint32_t frame_len, frame_done;  /* header + payload (+ tag) of the frame being written */
    uint64_t queued;                 /* bytes handed to the emulator so far */
    uint64_t written;
    loco_frame_mac tx_mac, rx_mac;
} tx_stream;

/* The next frame of a sending stream: header for the bytes at its cursor. */
static void tx_next_frame(const loco_plan *p, const loco_state_buffer *state, tx_stream *t,
                          const uint8_t **payload)
{
    int k = 0;
    uint64_t off = 0;
    sel_locate(t->sel, t->pos, &k, &off);
    int b = t->sel->buf[k];
    uint64_t len = p->bytes[b] - off;
    len = len < t->end - t->pos ? len : t->end - t->pos;
    len = len < FRAME_MAX ? len : FRAME_MAX;
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_XFER_DATA,
                           .epoch = p->epoch, .length = (uint32_t)len, .seq = off,
                           .chunk = (uint32_t)b};
    loco_frame_header_encode(&h, t->hdr);
    *payload = (const uint8_t *)state[b].ptr + off;
    t->frame_len = LOCO_FRAME_HEADER_BYTES + (uint32_t)len;
    if (t->tx_mac.on) {
        loco_frame_mac_tag(&t->tx_mac, t->hdr, *payload, len, t->hdr + LOCO_FRAME_HEADER_BYTES);
    }
    t->frame_done = 0;
}

/* Validate a receiver's XFER_REQ against the plan: it must ask this member for its stripe. */
static loco_status tx_accept_request(loco_comm_t comm, const loco_plan *p, selection *sels,
                                     tx_stream *t, loco_error *err)
{
    loco_frame_header h;
    loco_error e = {0};
    uint32_t round = 0, receiver = 0;
    if (LOCO_OK != loco_frame_header_decode(t->req, LOCO_XFER_REQ_BYTES, &h, &e) ||
        LOCO_FRAME_XFER_REQ != h.type ||
        LOCO_OK != loco_xfer_req_decode(t->req + LOCO_FRAME_HEADER_BYTES, h.length, &round,
                                        &receiver, &t->stripe, &t->nstripes, &e)) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "bad state request: %s", e.msg);
    }
    int ri = plan_receiver_index(p, receiver);
    if (round != p->round || ri < 0) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "state request of round %u from member %u "
                                                      "(round %u)", round, receiver, p->round);
    }
    t->sel = &sels[ri];
    uint32_t n = stripe_count(p, t->sel->total);
    if (t->nstripes != n || p->senders[t->stripe % (uint32_t)p->n_send] != comm->my_id) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "member %u asked for stripe %u of %u, not "
                                                      "this member's", receiver, t->stripe,
                              t->nstripes);
    }
    t->recv_index = ri;
    stripe_range(t->sel->total, n, t->stripe, &t->pos, &t->end);
    t->state = t->pos < t->end ? 1 : 2;
    return LOCO_OK;
}

/* Write what the socket (and the emulated link) take. */
static loco_status tx_write(const loco_plan *p, const loco_state_buffer *state, tx_stream *t,
                            loco_link *links, uint64_t *bytes, loco_error *err)
{
    for (int guard = 0; guard < 64 && 1 == t->state; guard++) {
        const uint8_t *payload = NULL;
        if (0 == t->frame_done) {
            tx_next_frame(p, state, t, &payload);
            if (t->link >= 0 && links[t->link].active) {
                uint32_t wire = t->frame_len + (t->tx_mac.on ? LOCO_FRAME_MAC_BYTES : 0);
                loco_link_enqueue(&links[t->link], (int)t->stripe, wire, loco_now_ns());
                t->queued += wire;
            }
        } else {
            int k = 0;
            uint64_t off = 0;
            sel_locate(t->sel, t->pos, &k, &off);
            payload = (const uint8_t *)state[t->sel->buf[k]].ptr + off;
        }
        uint32_t plen = t->frame_len - LOCO_FRAME_HEADER_BYTES;
        uint32_t tag = t->tx_mac.on ? LOCO_FRAME_MAC_BYTES : 0;
        uint32_t total = t->frame_len + tag;
        uint64_t allow = UINT64_MAX;
        if (t->link >= 0 && links[t->link].active) {
            allow = loco_link_released(&links[t->link], (int)t->stripe) - t->written;
            if (0 == allow) {
                return LOCO_OK;
            }
        }
        struct iovec iov[3];
        int n = 0;
        uint32_t d = t->frame_done;
        if (d < LOCO_FRAME_HEADER_BYTES) {
            iov[n++] = (struct iovec){t->hdr + d, LOCO_FRAME_HEADER_BYTES - d};
            d = LOCO_FRAME_HEADER_BYTES;
        }
        if (d < t->frame_len) {
            iov[n++] = (struct iovec){(void *)(payload + (d - LOCO_FRAME_HEADER_BYTES)),
                                      t->frame_len - d};
            d = t->frame_len;
        }
        if (tag > 0) {
            uint32_t td = t->frame_done > t->frame_len ? t->frame_done - t->frame_len : 0;
            iov[n++] = (struct iovec){t->hdr + LOCO_FRAME_HEADER_BYTES + td, tag - td};
        }
        uint64_t want = total - t->frame_done;
        for (uint64_t excess = want > allow ? want - allow : 0; excess > 0;) {
            if (iov[n - 1].iov_len <= excess) {
                excess -= iov[n - 1].iov_len;
                n--;
            } else {
                iov[n - 1].iov_len -= excess;
                excess = 0;
            }
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(t->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (EAGAIN == errno || EINTR == errno)) {
            return LOCO_OK;
        }
        if (w <= 0) {
            return loco_error_set(err, LOCO_ERR_PEER_LOST, "state stream %u: %s", t->stripe,
                                  w < 0 ? strerror(errno) : "closed");
        }
        uint32_t before = t->frame_done;
        t->frame_done += (uint32_t)w;
        t->written += (uint64_t)w;
        uint32_t pay_before = before > LOCO_FRAME_HEADER_BYTES ? before - LOCO_FRAME_HEADER_BYTES : 0;
        uint32_t pay_after = t->frame_done > LOCO_FRAME_HEADER_BYTES
                                 ? t->frame_done - LOCO_FRAME_HEADER_BYTES : 0;
        pay_before = pay_before < plen ? pay_before : plen;
        pay_after = pay_after < plen ? pay_after : plen;
        *bytes += pay_after - pay_before;
        if (t->frame_done == total) {
            t->pos += plen;
            t->frame_done = 0;
            if (t->pos == t->end) {
                t->state = 2;
            }
        }
    }
    return LOCO_OK;
}

static loco_status xfer_send(loco_comm_t comm, const loco_plan *p, const loco_state_buffer *state,
                             int nstate, uint64_t deadline_ns, loco_xfer_stats *stats,
                             loco_error *err)
{
    loco_ftc *f = comm->ftc;
    for (int b = 0; b < p->nbuf; b++) {
        if (b >= nstate || state[b].bytes != p->bytes[b]) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "state buffer %d does not match the plan",
                                  b);
        }
    }
    selection *sels = calloc((size_t)p->n_recv + 1, sizeof *sels);
    loco_link *links = calloc((size_t)p->n_recv + 1, sizeof *links);
    int expected = 0;
    for (int i = 0; i < p->n_recv && NULL != sels && NULL != links; i++) {
        sel_build(p, p->masks + (size_t)i * LOCO_STATE_MASK_BYTES, &sels[i]);
        uint32_t n = stripe_count(p, sels[i].total);
        for (uint32_t j = 0; j < n; j++) {
            expected += p->senders[j % (uint32_t)p->n_send] == comm->my_id;
        }
        int to = plan_rank_of(p, p->receivers[i]);
        const loco_link_config *lc = to >= 0 ? loco_comm_link_for(comm, to) : &comm->cfg.link;
        loco_link_init(&links[i], lc, (int)(n > 0 ? n : 1), loco_now_ns(), comm->cfg.link_seed,
                       loco_rng_stream_id(comm->my_id, p->receivers[i], 0x58464552));
    }
    int cap = 2 * expected + 8; /* receivers that re-dial get new streams */
    tx_stream *t = calloc((size_t)cap, sizeof *t);
    struct pollfd *pfd = calloc((size_t)cap, sizeof *pfd);
    loco_status st = LOCO_OK;
    if (NULL == sels || NULL == links || NULL == t || NULL == pfd) {
        st = LOCO_ERR_NOMEM;
    }
    int nt = 0, served = 0;
    uint64_t t0 = loco_now_ns();
    while (LOCO_OK == st && served < expected && !xfer_stop(comm, deadline_ns, &st, err)) {
        pthread_mutex_lock(&comm->lock); /* streams the loop thread authenticated for us */
        for (int k = 0; k < f->n_xfer; k++) {
            if (nt == cap) {
                close(f->xfer[k].fd);
                continue;
            }
            t[nt] = (tx_stream){.fd = f->xfer[k].fd, .link = -1};
            loco_frame_mac_init(&f->xfer[k].hs, false, comm->cfg.integrity, &t[nt].tx_mac,
                                &t[nt].rx_mac);
            loco_net_set_nonblocking(t[nt].fd);
            nt++;
        }
        f->n_xfer = 0;
        pthread_mutex_unlock(&comm->lock);
        int np = 0;
        uint64_t now = loco_now_ns(), next = now + 20000000ull;
        for (int i = 0; i < p->n_recv; i++) {
            loco_link_advance(&links[i], now);
            uint64_t d = loco_link_next_ns(&links[i]);
            next = d < next ? d : next;
        }
        for (int k = 0; k < nt; k++) {
            if (2 != t[k].state && t[k].fd >= 0) {
                pfd[np++] = (struct pollfd){.fd = t[k].fd,
                                            .events = 0 == t[k].state ? POLLIN : POLLOUT};
            }
        }
        int ms = next > now ? (int)((next - now) / 1000000) : 0;
        poll(pfd, (nfds_t)np, ms > 20 ? 20 : ms);
        for (int k = 0; k < nt && LOCO_OK == st; k++) {
            tx_stream *x = &t[k];
            if (0 == x->state) {
                ssize_t n = recv(x->fd, x->req + x->got, sizeof x->req - x->got, 0);
                if (n <= 0 && !(n < 0 && (EAGAIN == errno || EINTR == errno))) {
                    close(x->fd); /* a receiver that gave up: it will dial again */
                    x->fd = -1;
                    x->state = 2;
                    continue;
                }
                x->got += n > 0 ? (uint32_t)n : 0;
                if (x->got == sizeof x->req) {
                    st = tx_accept_request(comm, p, sels, x, err);
                    x->link = x->recv_index;
                    served += 2 == x->state;
                }
            }
            if (1 == x->state) {
                st = tx_write(p, state, x, links, &stats->bytes_sent, err);
                if (2 == x->state) {
                    close(x->fd);
                    x->fd = -1;
                    served++;
                }
            }
        }
    }
    for (int k = 0; k < nt; k++) {
        if (t[k].fd >= 0) {
            close(t[k].fd);
        }
    }
    for (int i = 0; i < p->n_recv && NULL != links; i++) {
        loco_link_free(&links[i]);
    }
    stats->seconds += (double)(loco_now_ns() - t0) * 1e-9;
    free(t);
    free(pfd);
    free(sels);
    free(links);
    return st;
}

loco_status loco_xfer_run(loco_comm_t comm, const loco_plan *plan,
                          const loco_state_buffer *state, int nstate, uint64_t plan_gen,
                          loco_xfer_stats *stats, loco_error *err)
{
    (void)plan_gen;
    loco_ftc *f = comm->ftc;
    uint64_t deadline = loco_now_ns() + (uint64_t)(comm->cfg.ft.sync_timeout_s * 1e9);
    bool sender = false;
    for (int i = 0; i < plan->n_send; i++) {
        sender = sender || plan->senders[i] == comm->my_id;
    }
    int ri = plan_receiver_index(plan, comm->my_id);
    loco_status st = LOCO_OK;
    if (sender && plan->n_recv > 0) {
        pthread_mutex_lock(&comm->lock);
        f->xfer_open = true;
        f->xfer_epoch = plan->epoch;
        pthread_mutex_unlock(&comm->lock);
        st = xfer_send(comm, plan, state, nstate, deadline, stats, err);
        pthread_mutex_lock(&comm->lock);
        f->xfer_open = false;
        for (int k = 0; k < f->n_xfer; k++) {
            close(f->xfer[k].fd);
        }
        f->n_xfer = 0;
        pthread_mutex_unlock(&comm->lock);
    } else if (ri >= 0) {
        st = xfer_receive(comm, plan, plan->masks + (size_t)ri * LOCO_STATE_MASK_BYTES, state,
                          nstate, deadline, stats, err);
    }
    return st;
}
