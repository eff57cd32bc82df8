/* collectives/accept.c — connections that arrive at a running member's listener (the event-loop
 * thread, loop.c). Every one is authenticated first (auth.c). Joiners are told where the
 * coordinator is (REDIRECT); state-transfer streams go to the sync point that expects them
 * (ftclient.c, xfer.c); data-plane connections are refused — membership is fixed within an
 * epoch, and those of a coming epoch are told to retry.
 */
#define _GNU_SOURCE /* accept4 */
#include "collectives/ft_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define PENDING_TIMEOUT_NS 5000000000ull

/* ---- inbound connections after init --------------------------------------------------------
 * Every one is authenticated first. Joiners are told where the coordinator is; state-transfer
 * streams go to the sync point that expects them; data-plane connections are refused
 * (membership is fixed within an epoch; those of a coming epoch are told to retry). */

void loco_pending_accept(loco_comm_t comm)
{
    for (;;) {
        int fd = accept4(comm->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            return;
        }
        int slot = -1;
        for (int i = 0; i < LOCO_MAX_PENDING; i++) {
            if (comm->pending[i].fd < 0) {
                slot = i;
                break;
            }
        }
        if (slot < 0) {
            close(fd);
            continue;
        }
        loco_pending_conn *p = &comm->pending[slot];
        p->fd = fd;
        p->got = 0;
        p->joiner = false;
        p->deadline_ns = loco_now_ns() + PENDING_TIMEOUT_NS;
        loco_net_peer_name(fd, p->name, sizeof p->name);
        loco_hs_accept(&p->hs, fd, comm->key, comm->nonce);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = LOCO_TAG_PENDING + (uint64_t)slot};
        epoll_ctl(comm->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

void loco_pending_close(loco_comm_t comm, loco_pending_conn *p)
{
    epoll_ctl(comm->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    p->fd = -1;
}

/* What a running member accepts: see the section comment. */
static loco_ack_code pending_check(void *ctx, const loco_frame_header *h, const loco_hello *hello,
                                   char *reason, size_t cap)
{
    loco_comm_t comm = ctx;
    switch (hello->kind) {
    case LOCO_CONN_CONTROL:
    case LOCO_CONN_DATA: {
        if (h->epoch > comm->epoch || !comm->admitted) {
            snprintf(reason, cap, "epoch %u, this member is still in epoch %u: retry", h->epoch,
                     comm->epoch);
            return LOCO_ACK_RETRY;
        }
        loco_ack_code code = loco_wire_check_hello(comm, h, hello, reason, cap);
        if (LOCO_ACK_OK == code) {
            snprintf(reason, cap, "membership is fixed in epoch %u (members join at sync points "
                                  "through the coordinator)", comm->epoch);
            code = LOCO_ACK_REFUSED;
        }
        return code;
    }
    case LOCO_CONN_STATE:
        return loco_ftc_check_state_hello(comm, h, hello, reason, cap);
    case LOCO_CONN_JOIN:
        if (!comm->ft) {
            snprintf(reason, cap, "this run has no control plane (ft.coordinator: none): no "
                                  "joiners");
            return LOCO_ACK_REFUSED;
        }
        return LOCO_ACK_OK;
    default:
        snprintf(reason, cap, "a %s connection to a worker (dial the coordinator's address)",
                 LOCO_CONN_COORD == hello->kind ? "coordinator" : "bootstrap");
        return LOCO_ACK_BAD_PEER;
    }
}

/* A joiner's JOIN_REQ arrived: tell it where the coordinator is. */
static void pending_redirect(loco_comm_t comm, loco_pending_conn *p)
{
    uint8_t out[LOCO_FRAME_HEADER_BYTES + LOCO_REDIRECT_BYTES];
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_REDIRECT,
                           .epoch = comm->epoch, .length = LOCO_REDIRECT_BYTES};
    char host[LOCO_HOST_MAX];
    int port = 0;
    loco_ftc_coordinator_address(comm, host, &port);
    loco_frame_header_encode(&h, out);
    loco_redirect_encode(host, (uint16_t)port, out + LOCO_FRAME_HEADER_BYTES);
    ssize_t ignored = send(p->fd, out, sizeof out, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
    LOCO_INFO("rank %d: a joiner at %s was sent to the coordinator at %s:%d", comm->rank, p->name,
              host, port);
    loco_pending_close(comm, p);
}

void loco_pending_read(loco_comm_t comm, loco_pending_conn *p)
{
    if (p->joiner) { /* read the JOIN_REQ frame (it only says the joiner is there) */
        ssize_t n = recv(p->fd, p->buf + p->got, sizeof p->buf - p->got, 0);
        if (n > 0) {
            p->got += (uint32_t)n;
        } else if (0 == n || (EAGAIN != errno && EINTR != errno)) {
            loco_pending_close(comm, p);
            return;
        }
        if (p->got >= LOCO_FRAME_HEADER_BYTES) {
            pending_redirect(comm, p);
        }
        return;
    }
    loco_hs_result r = loco_hs_step(&p->hs, pending_check, comm);
    if (LOCO_HS_AGAIN == r) {
        return;
    }
    if (LOCO_HS_ERROR == r) {
        if (LOCO_ACK_RETRY != p->hs.code && LOCO_ERR_PEER_LOST != p->hs.status) {
            LOCO_WARN("rank %d refused a connection from %s: %s", comm->rank, p->name,
                      p->hs.reason);
        }
        loco_pending_close(comm, p);
        return;
    }
    if (LOCO_CONN_JOIN == p->hs.hello.kind) {
        p->joiner = true;
        p->got = 0;
        return;
    }
    /* a state-transfer stream: the sync point takes it over */
    epoll_ctl(comm->epfd, EPOLL_CTL_DEL, p->fd, NULL);
    loco_ftc_take_state_conn(comm, p->fd, &p->hs);
    p->fd = -1;
}

