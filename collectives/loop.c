/* collectives/loop.c — the event-loop thread: every byte of a communicator moves here.
 *
 * One thread per communicator waits in epoll on: an eventfd (operations submitted by the
 * caller), a timerfd (link emulator releases, heartbeats, deadlines), the listener, and every
 * connection. Each iteration it reads what arrived (conn.c), starts queued operations (ring.c),
 * runs timers, advances the link emulators, writes what they release, and completes finished
 * operations: data complete -> digest -> DONE to every member -> all confirmed -> success.
 *
 * Failure handling: a peer is lost when its control connection breaks without a goodbye, when it
 * is silent for peer_timeout_s, when it breaks the protocol, or when the running operation makes
 * no progress for op_timeout_s (the member that never started it, per heartbeats, is blamed; else
 * the one waited on). The epoch is then broken: the running and queued operations fail with
 * LOCO_ERR_PEER_LOST (in-place inputs restored), the peers are told with ABORT frames, data
 * connections stop, control connections keep heartbeating so each member still knows who is
 * alive (input for the control plane).
 *
 * With a control plane (comm->ft, ftclient.c) the end of an operation is the coordinator's:
 * data complete -> digest -> RESULT to the coordinator -> its VERDICT -> commit or abort. An
 * operation waiting for its verdict is never failed locally (only the verdict decides it); one
 * that fails here first reports the failure, which aborts it everywhere. Between epochs the
 * caller's thread re-wires (membership.c): it asks the loop to detach from the epoch's
 * connections, builds the next ones, and attaches them again.
 */
#define _GNU_SOURCE /* accept4 */
#include "collectives/ft_impl.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#define TAG_WAKE LOCO_TAG_WAKE
#define TAG_TIMER LOCO_TAG_TIMER
#define TAG_LISTEN LOCO_TAG_LISTEN
#define TAG_PENDING LOCO_TAG_PENDING

/* ---- helpers -------------------------------------------------------------------------------- */

const char *loco_op_name(loco_op_kind kind)
{
    switch (kind) {
    case LOCO_OP_ALLREDUCE: return "allreduce";
    case LOCO_OP_ALLGATHERV: return "allgatherv";
    case LOCO_OP_BROADCAST: return "broadcast";
    case LOCO_OP_BARRIER: return "barrier";
    }
    return "operation";
}

/* ---- completing requests -------------------------------------------------------------------- */

static void loop_complete(loco_comm_t comm, loco_request *req)
{
    loco_op *op = &req->op;
    op->info.duration_s = (double)(loco_now_ns() - op->submit_ns) * 1e-9;
    if (op->started) {
        uint64_t lost = 0;
        for (int r = 0; r < comm->world; r++) {
            lost += comm->links[r].lost_packets;
        }
        uint32_t retrans = (uint32_t)(lost - op->lost_base);
        for (int k = 0; k < comm->cfg.streams && comm->world > 1; k++) {
            loco_conn *c = comm->out[k];
            uint32_t now = loco_net_retransmits(c->fd);
            retrans += now >= c->retrans_base ? now - c->retrans_base : 0;
        }
        op->info.retransmits = retrans;
    }
    pthread_mutex_lock(&comm->lock);
    comm->totals.ops++;
    comm->totals.ops_failed += LOCO_OK != op->info.status;
    if (comm->ft) { /* committed by a verdict, or aborted (by a verdict or here first) */
        comm->ftc->totals.ops_committed += LOCO_OK == op->info.status;
        comm->ftc->totals.ops_aborted += LOCO_OK != op->info.status;
    }
    comm->totals.payload_sent += op->info.payload_sent;
    comm->totals.payload_received += op->info.payload_received;
    comm->totals.retransmits += op->info.retransmits;
    comm->totals.op_seconds += op->info.duration_s;
    if (LOCO_OK != op->info.status) {
        loco_copy_str(comm->last_error, sizeof comm->last_error, op->info.error);
    }
    req->state = LOCO_REQ_DONE;
    pthread_cond_broadcast(&comm->cond);
    pthread_mutex_unlock(&comm->lock);
}

static void loop_fail_request(loco_comm_t comm, loco_request *req, loco_status st, int lost,
                              const char *msg)
{
    loco_op *op = &req->op;
    loco_op_restore(op);
    op->info.status = st;
    op->info.lost_rank = lost;
    loco_copy_str(op->info.error, sizeof op->info.error, msg);
    if (comm->seq_done < op->seq) {
        comm->seq_done = op->seq;
    }
    loop_complete(comm, req);
}

/* ---- failures ------------------------------------------------------------------------------- */

/* The epoch cannot run collectives any more: fail everything, tell the peers once. */
void loco_loop_break_epoch(loco_comm_t comm, int lost, loco_status st, bool tell, const char *msg)
{
    pthread_mutex_lock(&comm->lock);
    bool already = comm->broken;
    if (!already) {
        comm->broken = true;
        comm->lost_rank = lost;
        loco_copy_str(comm->broken_msg, sizeof comm->broken_msg, msg);
    }
    pthread_mutex_unlock(&comm->lock);
    if (already) {
        return;
    }
    LOCO_WARN("rank %d: %s", comm->rank, msg);
    uint64_t seq = NULL != comm->cur ? comm->cur->op.seq : comm->seq_done + 1;
    if (tell) { /* everyone still connected, the blamed peer too: it learns it was evicted */
        uint8_t payload[8 + LOCO_REASON_MAX];
        uint32_t len = (uint32_t)loco_abort_encode(lost, msg, payload);
        for (int r = 0; r < comm->world; r++) {
            if (r != comm->rank && LOCO_PEER_LEFT != comm->peer_state[r]) {
                loco_conn_send_ctl(comm, comm->ctl[r], LOCO_FRAME_ABORT, seq, 0, payload, len);
            }
        }
    }
    for (int k = 0; k < comm->cfg.streams && comm->world > 1; k++) {
        loco_conn_stop(comm, comm->out[k], false);
        loco_conn_stop(comm, comm->in[k], false);
    }
    if (NULL != comm->cur) {
        loco_request *req = comm->cur;
        if (comm->ft && req->op.result_sent && LOCO_VERDICT_ABORTED != req->op.verdict) {
            return; /* its fate is the coordinator's verdict (or it was committed already) */
        }
        if (comm->ft && !req->op.result_sent) {
            loco_ftc_op_result(comm, &req->op, st, lost, msg);
        }
        comm->cur = NULL;
        loop_fail_request(comm, req, st, lost, msg);
    }
}

void loco_loop_on_verdict(loco_comm_t comm, uint32_t epoch, uint64_t seq,
                          const loco_msg_outcome *v)
{
    if (epoch != comm->epoch || !comm->admitted) {
        return; /* about another epoch */
    }
    loco_request *cur = comm->cur;
    bool mine = NULL != cur && cur->op.seq == seq;
    if (mine) { /* a verdict on an operation this member ran (not one it will not start) */
        loco_ftc_op_verdict(comm, seq, (loco_verdict_kind)v->verdict);
    }
    if (LOCO_VERDICT_COMMITTED == v->verdict) {
        if (mine && cur->op.result_sent) {
            cur->op.verdict = LOCO_VERDICT_COMMITTED; /* loop_check_op commits it */
        }
        return;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "%s #%llu aborted by the coordinator: %s",
             mine ? loco_op_name(cur->op.kind) : "operation", (unsigned long long)seq,
             v->reason);
    if (mine) {
        cur->op.verdict = LOCO_VERDICT_ABORTED;
        cur->op.result_sent = true; /* nothing more to report */
    }
    int blame = v->blame >= 0 && v->blame < comm->world ? v->blame : -1;
    loco_status st = LOCO_OK != v->status ? (loco_status)v->status : LOCO_ERR_PEER_LOST;
    loco_loop_break_epoch(comm, blame, st, false, msg);
    if (mine && comm->cur == cur) { /* already broken before: fail it now */
        comm->cur = NULL;
        loop_fail_request(comm, cur, st, blame, msg);
    }
}

/* Peer `rank` is gone or misbehaved: close its connections and break the epoch. */
void loco_loop_peer_failed(loco_comm_t comm, int rank, loco_status st, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (LOCO_PEER_ALIVE == comm->peer_state[rank]) {
        comm->peer_state[rank] = LOCO_PEER_LOST;
    }
    loco_loop_break_epoch(comm, rank, st, true, msg);
    if (LOCO_PEER_LOST == comm->peer_state[rank]) {
        loco_conn *ctl = comm->ctl[rank];
        if (ctl->live && ctl->out_off < ctl->out_len) { /* best effort: the ABORT, unshaped */
            ssize_t ignored = send(ctl->fd, ctl->out + ctl->out_off, ctl->out_len - ctl->out_off,
                                   MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
        }
        for (int i = 0; i < comm->nconns; i++) {
            if (comm->conns[i].peer == rank) {
                loco_conn_stop(comm, &comm->conns[i], true);
            }
        }
    }
}

/* ---- operations ----------------------------------------------------------------------------- */

/* Why the epoch cannot start an operation (a lost or departed peer, a closed stream), or NULL. */
static bool loop_epoch_usable(loco_comm_t comm, char *why, size_t cap)
{
    for (int r = 0; r < comm->world; r++) {
        if (r != comm->rank && LOCO_PEER_ALIVE != comm->peer_state[r]) {
            snprintf(why, cap, "rank %d %s", r,
                     LOCO_PEER_LEFT == comm->peer_state[r] ? "left the group" : "was lost");
            return false;
        }
    }
    for (int k = 0; k < comm->cfg.streams && comm->world > 1; k++) {
        if (!comm->out[k]->live || !comm->in[k]->live) {
            snprintf(why, cap, "%s is closed",
                     !comm->out[k]->live ? comm->out[k]->name : comm->in[k]->name);
            return false;
        }
    }
    return true;
}

static void loop_start_next(loco_comm_t comm)
{
    while (NULL == comm->cur) {
        pthread_mutex_lock(&comm->lock);
        if (0 == comm->q_count) {
            pthread_mutex_unlock(&comm->lock);
            return;
        }
        loco_request *req = &comm->reqs[comm->queue[comm->q_head]];
        comm->q_head = (comm->q_head + 1) % LOCO_MAX_REQUESTS;
        comm->q_count--;
        req->state = LOCO_REQ_RUNNING;
        bool broken = comm->broken;
        char msg[256];
        loco_copy_str(msg, sizeof msg, comm->broken_msg);
        int lost = comm->lost_rank;
        pthread_mutex_unlock(&comm->lock);
        loco_op *op = &req->op;
        if (!broken && comm->detached) {
            broken = true;
            loco_copy_str(msg, sizeof msg, "the group is being re-formed");
        }
        if (broken) {
            char full[300];
            snprintf(full, sizeof full, "epoch %u is broken: %s", comm->epoch, msg);
            if (comm->ft) { /* the others may be waiting in it */
                loco_ftc_op_result(comm, op, LOCO_ERR_PEER_LOST, lost, full);
            }
            loop_fail_request(comm, req, LOCO_ERR_PEER_LOST, lost, full);
            continue;
        }
        char why[200];
        if (!loop_epoch_usable(comm, why, sizeof why)) {
            char full[300];
            snprintf(full, sizeof full, "%s #%llu cannot run: %s", loco_op_name(op->kind),
                     (unsigned long long)op->seq, why);
            comm->cur = req;
            loco_loop_break_epoch(comm, -1, LOCO_ERR_PEER_LOST, true, full);
            continue;
        }
        uint64_t now = loco_now_ns();
        op->started = true;
        op->start_ns = now;
        op->last_progress_ns = now;
        for (int r = 0; r < comm->world; r++) {
            op->lost_base += comm->links[r].lost_packets;
        }
        for (int k = 0; k < comm->cfg.streams && comm->world > 1; k++) {
            comm->out[k]->retrans_base = loco_net_retransmits(comm->out[k]->fd);
        }
        comm->cur = req;
        if (comm->ft) {
            loco_ftc_op_begin(comm, op);
        }
        loco_error e = {0};
        loco_status st = loco_op_start(comm, op, &e);
        if (LOCO_OK != st) {
            loco_loop_break_epoch(comm, -1, st, true, loco_error_msg(&e, st));
            continue;
        }
        loco_conn_unpark(comm);
    }
}

/* The running operation: data complete -> digest, DONE to everyone; all confirmed -> success.
 * Returns true if it queued frames or finished an operation (the caller writes again). */
static bool loop_check_op(loco_comm_t comm)
{
    bool acted = false;
    for (;;) {
        loco_request *req = comm->cur;
        if (NULL == req || !loco_op_complete(&req->op)) {
            return acted;
        }
        loco_op *op = &req->op;
        if (!op->data_done) {
            op->data_done = true;
            loco_op_digest(comm, op);
        }
        if (comm->ft) { /* the coordinator's verdict decides */
            if (!op->result_sent) {
                loco_ftc_op_result(comm, op, LOCO_OK, -1, "");
                acted = true;
            }
            if (LOCO_VERDICT_COMMITTED != op->verdict) {
                return acted;
            }
        } else if (comm->cfg.confirm && comm->world > 1) {
            if (!op->done_sent) {
                uint8_t payload[8];
                for (int i = 0; i < 8; i++) {
                    payload[i] = (uint8_t)(op->info.digest >> (8 * i));
                }
                for (int r = 0; r < comm->world; r++) {
                    if (r != comm->rank) {
                        loco_conn_send_ctl(comm, comm->ctl[r], LOCO_FRAME_DONE, op->seq, 0, payload,
                                      op->info.has_digest ? 8 : 0);
                    }
                }
                op->done_sent = true;
                acted = true;
            }
            for (int r = 0; r < comm->world; r++) {
                if (r != comm->rank && comm->done_seq[r] < op->seq) {
                    return acted; /* wait for r's DONE */
                }
            }
            for (int r = 0; r < comm->world && op->info.has_digest; r++) {
                uint64_t theirs = comm->done_digest[2 * r + (op->seq & 1)];
                if (r != comm->rank && theirs != op->info.digest) {
                    char msg[256];
                    snprintf(msg, sizeof msg,
                             "%s #%llu diverged: rank %d's result digest %016llx differs from "
                             "rank %d's %016llx",
                             loco_op_name(op->kind), (unsigned long long)op->seq, r,
                             (unsigned long long)theirs, comm->rank,
                             (unsigned long long)op->info.digest);
                    loco_loop_break_epoch(comm, -1, LOCO_ERR_CHECKSUM, true, msg);
                    return true;
                }
            }
        }
        loco_op_commit(comm, op);
        comm->cur = NULL;
        comm->seq_done = op->seq;
        loop_complete(comm, req);
        loop_start_next(comm);
        acted = true;
    }
}

/* ---- timers --------------------------------------------------------------------------------- */

static void loop_timers(loco_comm_t comm, uint64_t now)
{
    if (comm->ft) {
        loco_ftc_timers(comm, now);
    }
    if (comm->detached) {
        return;
    }
    if (now >= comm->next_ping_ns) {
        uint64_t in_op = NULL != comm->cur ? comm->cur->op.seq : comm->seq_done;
        for (int r = 0; r < comm->world; r++) {
            if (r != comm->rank && LOCO_PEER_ALIVE == comm->peer_state[r]) {
                loco_conn_send_ctl(comm, comm->ctl[r], LOCO_FRAME_PING, in_op, (uint32_t)comm->rank,
                              NULL, 0);
            }
        }
        comm->next_ping_ns = now + (uint64_t)(comm->cfg.heartbeat_s * 1e9);
    }
    uint64_t silence = (uint64_t)(comm->cfg.peer_timeout_s * 1e9);
    for (int r = 0; r < comm->world; r++) {
        if (r != comm->rank && LOCO_PEER_ALIVE == comm->peer_state[r] &&
            now > comm->last_heard_ns[r] + silence) {
            loco_loop_peer_failed(comm, r, LOCO_ERR_PEER_LOST,
                             "peer lost: %s sent nothing for %.1f s (stopped, frozen link or dead "
                             "host)",
                             comm->ctl[r]->name, (double)(now - comm->last_heard_ns[r]) * 1e-9);
        }
    }
    loco_request *cur = comm->cur;
    if (NULL != cur && !cur->op.result_sent &&
        now > cur->op.last_progress_ns + (uint64_t)(comm->cfg.op_timeout_s * 1e9)) {
        loco_op *op = &cur->op;
        bool receiving = op->recv_done < op->recv_expected;
        int blame = receiving ? comm->prev : comm->next;
        char why[96];
        snprintf(why, sizeof why, "%s rank %d", receiving ? "waiting for data from" : "sending to",
                 blame);
        for (int d = 1; d < comm->world && !op->data_done; d++) { /* who never started it? */
            int r = (comm->rank - d + comm->world) % comm->world;
            if (comm->peer_seq[r] < op->seq) {
                blame = r;
                snprintf(why, sizeof why, "rank %d has not started it (per its heartbeats)", r);
                break;
            }
        }
        for (int r = 0; r < comm->world && op->data_done; r++) {
            if (r != comm->rank && comm->done_seq[r] < op->seq) {
                blame = r;
                snprintf(why, sizeof why, "waiting for the confirmation of rank %d", r);
                break;
            }
        }
        loco_loop_peer_failed(comm, blame, LOCO_ERR_PEER_LOST,
                         "peer lost: no progress for %.1f s in %s #%llu: %s",
                         comm->cfg.op_timeout_s, loco_op_name(op->kind), (unsigned long long)op->seq,
                         why);
    }
    for (int i = 0; i < LOCO_MAX_PENDING; i++) {
        loco_pending_conn *p = &comm->pending[i];
        if (p->fd >= 0 && now > p->deadline_ns) {
            LOCO_WARN("rank %d dropped a connection from %s: no handshake within 5 s",
                      comm->rank, p->name);
            loco_pending_close(comm, p);
        }
    }
}

static uint64_t loop_next_deadline(loco_comm_t comm)
{
    uint64_t t = comm->ft ? loco_ftc_next_deadline(comm) : UINT64_MAX;
    if (comm->detached) {
        return t;
    }
    t = comm->next_ping_ns < t ? comm->next_ping_ns : t;
    uint64_t silence = (uint64_t)(comm->cfg.peer_timeout_s * 1e9);
    for (int r = 0; r < comm->world; r++) {
        if (r != comm->rank && LOCO_PEER_ALIVE == comm->peer_state[r]) {
            uint64_t d = comm->last_heard_ns[r] + silence + 1;
            t = d < t ? d : t;
        }
        if (r != comm->rank) {
            uint64_t d = loco_link_next_ns(&comm->links[r]);
            t = d < t ? d : t;
        }
    }
    if (NULL != comm->cur && !comm->cur->op.result_sent) {
        uint64_t d = comm->cur->op.last_progress_ns + (uint64_t)(comm->cfg.op_timeout_s * 1e9) + 1;
        t = d < t ? d : t;
    }
    for (int i = 0; i < LOCO_MAX_PENDING; i++) {
        if (comm->pending[i].fd >= 0 && comm->pending[i].deadline_ns + 1 < t) {
            t = comm->pending[i].deadline_ns + 1;
        }
    }
    return t;
}

/* Returns the epoll timeout in ms: 0 when something is due now, else -1 (the timerfd fires).
 * The timer is re-armed only when the next deadline moved earlier: a later one (heartbeats and
 * progress push deadlines back all the time) costs one early wake-up instead of a syscall per
 * iteration. */
static int loop_arm_timer(loco_comm_t comm)
{
    uint64_t t = loop_next_deadline(comm);
    if (t <= loco_now_ns()) {
        return 0;
    }
    if (0 == comm->timer_armed_ns || t < comm->timer_armed_ns) {
        struct itimerspec its = {.it_value = {.tv_sec = (time_t)(t / 1000000000ull),
                                              .tv_nsec = (long)(t % 1000000000ull)}};
        timerfd_settime(comm->tfd, TFD_TIMER_ABSTIME, &its, NULL);
        comm->timer_armed_ns = t;
    }
    return -1;
}

/* ---- the loop ------------------------------------------------------------------------------- */

/* Leaving: write pending control bytes and a BYE, bypassing the emulator (best effort). */
static void loop_say_goodbye(loco_comm_t comm)
{
    if (comm->ft && loco_chan_is_open(&comm->ftc->chan)) { /* finished, not lost */
        loco_chan *ch = &comm->ftc->chan;
        loco_chan_queue(ch, LOCO_FRAME_BYE, comm->epoch, 0, 0, NULL, 0);
        uint64_t deadline = loco_now_ns() + 200000000ull;
        while (loco_chan_want_write(ch) && loco_now_ns() < deadline && loco_chan_flush(ch) >= 0) {
            struct pollfd p = {.fd = ch->fd, .events = POLLOUT};
            poll(&p, 1, 10);
        }
    }
    for (int r = 0; r < comm->world && !comm->detached; r++) {
        loco_conn *c = r == comm->rank ? NULL : comm->ctl[r];
        if (NULL == c || !c->live) {
            continue;
        }
        loco_conn_send_ctl(comm, c, LOCO_FRAME_BYE, 0, 0, NULL, 0);
        uint64_t deadline = loco_now_ns() + 200000000ull;
        while (c->out_off < c->out_len && loco_now_ns() < deadline) {
            ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                c->out_off += (size_t)w;
            } else if (w < 0 && EAGAIN != errno && EINTR != errno) {
                break;
            }
        }
    }
}

/* Let go of the epoch's connections (the caller re-wires) or take the new ones back. */
static void loop_detach_now(loco_comm_t comm)
{
    for (int i = 0; i < comm->nconns; i++) {
        loco_conn_stop(comm, &comm->conns[i], true);
    }
    epoll_ctl(comm->epfd, EPOLL_CTL_DEL, comm->listen_fd, NULL);
    for (int i = 0; i < LOCO_MAX_PENDING; i++) {
        if (comm->pending[i].fd >= 0) {
            loco_pending_close(comm, &comm->pending[i]);
        }
    }
    comm->detached = true;
}

void loco_loop_register_conns(loco_comm_t comm)
{
    for (int i = 0; i < comm->nconns; i++) {
        loco_conn *c = &comm->conns[i];
        if (c->fd >= 0) {
            c->events = EPOLLIN | EPOLLRDHUP;
            struct epoll_event ev = {.events = c->events, .data.u64 = (uint64_t)i};
            epoll_ctl(comm->epfd, EPOLL_CTL_ADD, c->fd, &ev);
        }
    }
}

static void loop_attach_now(loco_comm_t comm)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    epoll_ctl(comm->epfd, EPOLL_CTL_ADD, comm->listen_fd, &ev);
    uint64_t now = loco_now_ns();
    loco_loop_register_conns(comm);
    for (int r = 0; r < comm->world; r++) {
        comm->last_heard_ns[r] = now;
    }
    comm->next_ping_ns = now;
    comm->timer_armed_ns = 0;
    comm->detached = false;
}

/* Caller thread: ask and wait. */
void loco_loop_detach(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    comm->detach_req = true;
    pthread_mutex_unlock(&comm->lock);
    uint64_t one = 1;
    ssize_t ignored = write(comm->evfd, &one, sizeof one);
    (void)ignored;
    pthread_mutex_lock(&comm->lock);
    while (!comm->detached && comm->thread_started) {
        pthread_cond_wait(&comm->cond, &comm->lock);
    }
    pthread_mutex_unlock(&comm->lock);
}

void loco_loop_attach(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    comm->detach_req = false;
    pthread_mutex_unlock(&comm->lock);
    uint64_t one = 1;
    ssize_t ignored = write(comm->evfd, &one, sizeof one);
    (void)ignored;
    pthread_mutex_lock(&comm->lock);
    while (comm->detached && comm->thread_started) {
        pthread_cond_wait(&comm->cond, &comm->lock);
    }
    pthread_mutex_unlock(&comm->lock);
}

void *loco_loop_main(void *arg)
{
    loco_comm_t comm = arg;
    struct epoll_event events[64];
    for (;;) {
        pthread_mutex_lock(&comm->lock);
        bool stop = comm->stop;
        bool want_detach = comm->detach_req;
        if (want_detach != comm->detached && NULL == comm->cur) {
            if (want_detach) {
                loop_detach_now(comm);
            } else {
                loop_attach_now(comm);
            }
            pthread_cond_broadcast(&comm->cond);
        }
        pthread_mutex_unlock(&comm->lock);
        if (stop) {
            if (!comm->crashed) {
                loop_say_goodbye(comm);
            }
            return NULL;
        }
        int timeout = loop_arm_timer(comm);
        int n = epoll_wait(comm->epfd, events, 64, timeout);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            uint32_t ev = events[i].events;
            if (TAG_WAKE == tag) {
                uint64_t v;
                ssize_t ignored = read(comm->evfd, &v, sizeof v);
                (void)ignored;
            } else if (TAG_TIMER == tag) {
                uint64_t v;
                ssize_t ignored = read(comm->tfd, &v, sizeof v);
                (void)ignored;
                comm->timer_armed_ns = 0;
            } else if (TAG_LISTEN == tag) {
                loco_pending_accept(comm);
            } else if (LOCO_TAG_COORD == tag) {
                loco_ftc_on_readable(comm);
            } else if (tag >= TAG_PENDING && tag < TAG_PENDING + LOCO_MAX_PENDING) {
                loco_pending_conn *p = &comm->pending[tag - TAG_PENDING];
                if (p->fd >= 0) {
                    loco_pending_read(comm, p);
                }
            } else if (tag < (uint64_t)comm->nconns && !comm->detached) {
                loco_conn *c = &comm->conns[tag];
                if (c->live && c->rx_parked && (ev & (EPOLLERR | EPOLLHUP))) {
                    loco_conn_closed(comm, c, ECONNRESET);
                } else if (c->live && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))) {
                    if (c->outbound && LOCO_CONN_DATA == c->kind) {
                        uint8_t junk[64];
                        ssize_t r = recv(c->fd, junk, sizeof junk, 0);
                        if (r > 0) {
                            loco_conn_violation(comm, c, "bytes on a sending data stream");
                        } else if (0 == r || (EAGAIN != errno && EINTR != errno)) {
                            loco_conn_closed(comm, c, r < 0 ? errno : 0);
                        }
                    } else {
                        loco_conn_read(comm, c);
                    }
                }
                if (c->live && (ev & EPOLLOUT)) {
                    c->want_out = false;
                }
            }
        }
        uint64_t now = loco_now_ns();
        loop_start_next(comm);
        loop_timers(comm, now);
        /* Writing can finish an operation, and finishing one queues frames (DONE, the next
         * operation's first chunks): write until nothing more happens. */
        bool again = !comm->detached;
        for (int pass = 0; again && pass < 8; pass++) {
            for (int r = 0; r < comm->world; r++) {
                if (r != comm->rank) {
                    loco_link_advance(&comm->links[r], now);
                }
            }
            for (int i = 0; i < comm->nconns; i++) {
                if (!comm->conns[i].want_out) {
                    loco_conn_flush(comm, &comm->conns[i]);
                }
            }
            again = loop_check_op(comm);
            if (comm->ft) {
                loco_ftc_flush(comm);
            }
        }
        if (comm->ft) {
            loco_ftc_flush(comm);
        }
    }
}

loco_status loco_scratch_reserve(loco_comm_t comm, size_t bytes, loco_error *err)
{
    if (bytes <= comm->scratch_cap) {
        return LOCO_OK;
    }
    size_t cap = bytes + bytes / 4;
    uint8_t *grown = loco_alloc_aligned(cap);
    if (NULL == grown) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "rank %d: no memory for %zu bytes of scratch",
                              comm->rank, cap);
    }
    if (comm->scratch_cap > 0) {
        memcpy(grown, comm->scratch, comm->scratch_cap);
    }
    free(comm->scratch);
    comm->scratch = grown;
    comm->scratch_cap = cap;
    return LOCO_OK;
}
