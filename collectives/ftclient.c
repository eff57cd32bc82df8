/* collectives/ftclient.c — the worker's side of the control plane (ft_impl.h): its link to the
 * coordinator, run by the event-loop thread.
 *
 *   - every operation: BEGIN when it starts, RESULT (digest, or the failure) when it ends here;
 *     the VERDICT that comes back is handed to loop.c (commit or abort the request);
 *   - heartbeats both ways; a PING carries what the running operation waits for (the
 *     coordinator's straggler evidence); a silent or broken link starts a failover
 *     (failover.c);
 *   - PLAN / COMMIT / WELCOME go to a mailbox the caller's thread waits on (membership.c), and
 *     the caller's requests go out through an outbox (the loop owns the socket);
 *   - state-transfer streams the loop accepted wait here for the sync point (xfer.c).
 */
#include "collectives/ft_impl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

void loco_ftc_wake(loco_comm_t comm)
{
    uint64_t one = 1;
    ssize_t ignored = write(comm->evfd, &one, sizeof one);
    (void)ignored;
}

/* ---- registration --------------------------------------------------------------------------- */

/* REGISTER from what this member holds (loop thread, or the caller before the loop runs). */
uint8_t *loco_ftc_register_payload(loco_comm_t comm, uint32_t flags, uint32_t *len)
{
    loco_ftc *f = comm->ftc;
    pthread_mutex_lock(&comm->lock);
    loco_msg_register m = {.id = comm->my_id, .flags = flags, .epoch = comm->epoch,
                           .step = f->step, .done_seq = f->done_seq,
                           .done_verdict = f->done_verdict, .coord_id = f->coord_id,
                           .counts = f->counts};
    loco_request *cur = comm->cur;
    if (NULL != cur && cur->op.result_sent && LOCO_VERDICT_NONE == cur->op.verdict) {
        m.pend_seq = cur->op.seq;
        m.pend_digest = cur->op.info.digest;
    }
    m.self = comm->admitted && comm->rank >= 0 ? comm->members[comm->rank] : comm->members[0];
    m.n = comm->admitted ? comm->world : 0;
    m.table = comm->members;
    size_t cap = 256 + (size_t)(m.n + 1) * LOCO_MEMBER_BYTES;
    uint8_t *buf = malloc(cap);
    size_t n = NULL == buf ? 0 : loco_msg_register_encode(&m, buf, cap);
    pthread_mutex_unlock(&comm->lock);
    *len = (uint32_t)n;
    if (0 == n) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---- init / free ---------------------------------------------------------------------------- */

loco_status loco_ftc_init(loco_comm_t comm, loco_error *err)
{
    loco_ftc *f = calloc(1, sizeof *f);
    if (NULL == f) {
        return LOCO_ERR_NOMEM;
    }
    f->chan.fd = -1;
    f->failover_chan.fd = -1;
    comm->ftc = f;
    const loco_comm_config *cfg = &comm->cfg;
    uint64_t deadline = loco_now_ns() + (uint64_t)(cfg->connect_timeout_s * 1e9);
    if (LOCO_BOOTSTRAP_ADMIT == cfg->bootstrap) {
        loco_member *self = &comm->members[0];
        uint32_t id = 0;
        LOCO_TRY(loco_ftc_dial_as_joiner(cfg, comm->key, self, cfg->join, &f->chan, &id, &comm->nonce,
                                    f->coord_host, &f->coord_port, deadline, err));
        comm->my_id = self->id = id;
        f->coord_id = LOCO_ID_ANY;
        LOCO_INFO("joiner: registered with the coordinator at %s:%d as member %u; admitted at the "
                  "group's next sync point", f->coord_host, f->coord_port, id);
        return LOCO_OK;
    }
    f->counts.started = (uint32_t)comm->world;
    if (LOCO_COORD_EXTERNAL == cfg->ft.coordinator) {
        LOCO_TRY(loco_net_split_hostport(cfg->ft.coordinator_addr, f->coord_host,
                                         sizeof f->coord_host, &f->coord_port, err));
        f->coord_id = LOCO_ID_ANY;
    } else {
        loco_copy_str(f->coord_host, sizeof f->coord_host, comm->members[0].host);
        f->coord_port = comm->members[0].cport;
        f->coord_id = comm->members[0].id;
        if (0 == comm->rank) {
            LOCO_TRY(loco_ftc_start_coordinator(comm, false, LOCO_ID_ANY, err));
        }
    }
    loco_error e = {0};
    loco_status st = loco_ftc_dial_member(cfg, comm->key, comm->nonce, comm->my_id, f->coord_host,
                                     f->coord_port, deadline, &f->chan, &e);
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "rank %d: cannot reach the coordinator: %s", comm->rank,
                              e.msg);
    }
    uint32_t len = 0;
    uint8_t *reg = loco_ftc_register_payload(comm, 0, &len);
    if (NULL == reg) {
        return LOCO_ERR_NOMEM;
    }
    loco_chan_queue(&f->chan, LOCO_FRAME_REGISTER, comm->epoch, 0, 0, reg, len);
    free(reg);
    st = loco_ftc_flush_blocking(&f->chan, deadline, &e);
    if (LOCO_OK == st) {
        st = loco_ftc_wait_frame(&f->chan, deadline, &e);
    }
    loco_msg_welcome w = {0};
    if (LOCO_OK == st && (LOCO_FRAME_WELCOME != f->chan.rx.type ||
                          LOCO_OK != loco_msg_welcome_decode(f->chan.rx_buf, f->chan.rx.length,
                                                             &w, &e) ||
                          0 != w.status)) {
        st = loco_error_set(&e, LOCO_ERR_PROTOCOL, "the coordinator did not accept member %u",
                            comm->my_id);
    }
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "rank %d: registering with the coordinator: %s",
                              comm->rank, e.msg);
    }
    return LOCO_OK;
}

void loco_ftc_join_failover(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    if (NULL == f) {
        return;
    }
    pthread_mutex_lock(&comm->lock);
    bool pending = f->failover_running || f->failover_ready;
    pthread_mutex_unlock(&comm->lock);
    if (pending) { /* it stops at comm->stop; joined once, here */
        pthread_join(f->failover_thread, NULL);
        pthread_mutex_lock(&comm->lock);
        f->failover_running = f->failover_ready = false;
        pthread_mutex_unlock(&comm->lock);
    }
}

void loco_ftc_free(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    if (NULL == f) {
        return;
    }
    loco_ftc_join_failover(comm);
    loco_chan_close(&f->failover_chan);
    loco_chan_close(&f->chan);
    for (int i = 0; i < f->n_xfer; i++) {
        close(f->xfer[i].fd);
    }
    free(f->outbox);
    free(f->req);
    free(f->plan);
    free(f);
    comm->ftc = NULL;
}

/* ---- loop thread: the link ------------------------------------------------------------------ */

void loco_ftc_epoll(loco_comm_t comm, int op)
{
    loco_ftc *f = comm->ftc;
    uint32_t events = EPOLLIN | EPOLLRDHUP | (loco_chan_want_write(&f->chan) ? EPOLLOUT : 0u);
    struct epoll_event ev = {.events = events, .data.u64 = LOCO_TAG_COORD};
    epoll_ctl(comm->epfd, op, f->chan.fd, &ev);
}

void loco_ftc_attach(loco_comm_t comm)
{
    if (NULL != comm->ftc && loco_chan_is_open(&comm->ftc->chan)) {
        loco_ftc_epoll(comm, EPOLL_CTL_ADD);
        comm->ftc->next_ping_ns = loco_now_ns();
    }
}

/* ---- loop thread: frames -------------------------------------------------------------------- */

static bool plan_lists(const loco_plan *p, uint32_t id)
{
    for (int k = 0; k < p->n; k++) {
        if (p->members[k].id == id) {
            return true;
        }
    }
    return false;
}

static void ftc_on_frame(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    const loco_frame_header *h = &f->chan.rx;
    const uint8_t *p = f->chan.rx_buf;
    loco_error e = {0};
    switch (h->type) {
    case LOCO_FRAME_PING: return;
    case LOCO_FRAME_VERDICT: {
        loco_msg_outcome v;
        if (LOCO_OK == loco_msg_outcome_decode(p, h->length, &v, &e)) {
            loco_loop_on_verdict(comm, h->epoch, h->seq, &v);
            return;
        }
        break;
    }
    case LOCO_FRAME_PLAN: {
        loco_plan plan;
        if (LOCO_OK != loco_plan_decode(p, h->length, h->epoch, &plan, &e)) {
            break;
        }
        bool out = !plan_lists(&plan, comm->my_id);
        pthread_mutex_lock(&comm->lock);
        bool leaving = f->leave_requested;
        uint8_t *copy = malloc(h->length + 1);
        if (NULL != copy) {
            memcpy(copy, p, h->length);
            free(f->plan);
            f->plan = copy;
            f->plan_len = h->length;
            f->plan_epoch = h->epoch;
            f->plan_gen++;
        }
        f->counts = plan.counts;
        f->totals.counts = plan.counts;
        pthread_cond_broadcast(&comm->cond);
        pthread_mutex_unlock(&comm->lock);
        if (out && !leaving && comm->admitted) { /* evicted: nothing may run here any more */
            pthread_mutex_lock(&comm->lock);
            f->evicted = true;
            loco_copy_str(f->evicted_note, sizeof f->evicted_note, plan.note);
            pthread_mutex_unlock(&comm->lock);
            char msg[300];
            snprintf(msg, sizeof msg, "this member was removed from the group: %s", plan.note);
            loco_loop_break_epoch(comm, -1, LOCO_ERR_ABORTED, false, msg);
        }
        loco_plan_free(&plan);
        return;
    }
    case LOCO_FRAME_COMMIT: {
        uint32_t round = 0;
        int32_t status = 0;
        char reason[LOCO_REASON_MAX + 1];
        if (LOCO_OK == loco_msg_round_decode(p, h->length, &round, &status, reason, &e)) {
            pthread_mutex_lock(&comm->lock);
            f->commit_round = round;
            f->commit_gen++;
            pthread_cond_broadcast(&comm->cond);
            pthread_mutex_unlock(&comm->lock);
            return;
        }
        break;
    }
    case LOCO_FRAME_WELCOME: {
        loco_msg_welcome w;
        if (LOCO_OK == loco_msg_welcome_decode(p, h->length, &w, &e)) {
            pthread_mutex_lock(&comm->lock);
            f->welcome = w;
            f->welcome_gen++;
            pthread_cond_broadcast(&comm->cond);
            pthread_mutex_unlock(&comm->lock);
            if (2 == w.status && comm->admitted) {
                loco_loop_break_epoch(comm, -1, LOCO_ERR_ABORTED, false,
                                      "the new coordinator does not count this process as a "
                                      "member any more");
            }
            return;
        }
        break;
    }
    default:
        snprintf(e.msg, sizeof e.msg, "unexpected %s frame", loco_frame_type_name(h->type));
    }
    LOCO_WARN("rank %d: ignored a message from the coordinator: %s", comm->rank, e.msg);
}

void loco_ftc_on_readable(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    for (int n = 0; n < 64 && loco_chan_is_open(&f->chan); n++) {
        loco_error e = {0};
        int r = loco_chan_read(&f->chan, &e);
        if (0 == r) {
            return;
        }
        if (r < 0) {
            loco_ftc_lost(comm, e.msg);
            return;
        }
        ftc_on_frame(comm);
    }
}

void loco_ftc_timers(loco_comm_t comm, uint64_t now)
{
    loco_ftc *f = comm->ftc;
    if (f->lost) {
        loco_ftc_reconnected(comm);
        return;
    }
    if (!loco_chan_is_open(&f->chan)) {
        return;
    }
    if (now > f->chan.last_rx_ns + (uint64_t)(comm->cfg.peer_timeout_s * 1e9)) {
        char why[96];
        snprintf(why, sizeof why, "silent for %.1f s",
                 (double)(now - f->chan.last_rx_ns) * 1e-9);
        loco_ftc_lost(comm, why);
        return;
    }
    if (now >= f->next_ping_ns) {
        loco_msg_progress prog = {.waiting_on = -1};
        loco_request *cur = comm->cur;
        uint64_t seq = comm->seq_done;
        if (NULL != cur && !comm->detached && !cur->op.data_done && comm->world > 1) {
            const loco_op *op = &cur->op;
            seq = op->seq;
            prog.flags = 1;
            bool receiving = op->recv_done < op->recv_expected;
            prog.waiting_on = receiving ? comm->prev : comm->next;
            prog.flags |= receiving ? 0 : 2;
            prog.idle_ms = (uint32_t)((now - op->last_progress_ns) / 1000000);
        }
        uint8_t buf[12];
        size_t len = loco_msg_progress_encode(&prog, buf);
        loco_chan_queue(&f->chan, LOCO_FRAME_PING, comm->epoch, seq, 0, buf, (uint32_t)len);
        f->next_ping_ns = now + (uint64_t)(comm->cfg.heartbeat_s * 1e9);
    }
}

uint64_t loco_ftc_next_deadline(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    if (f->lost || !loco_chan_is_open(&f->chan)) {
        return loco_now_ns() + 50000000ull; /* poll the failover thread */
    }
    uint64_t silent = f->chan.last_rx_ns + (uint64_t)(comm->cfg.peer_timeout_s * 1e9) + 1;
    return f->next_ping_ns < silent ? f->next_ping_ns : silent;
}

void loco_ftc_flush(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    if (!loco_chan_is_open(&f->chan)) {
        return;
    }
    pthread_mutex_lock(&comm->lock);
    size_t off = 0;
    while (off + LOCO_FRAME_HEADER_BYTES <= f->outbox_len) { /* frames the caller posted */
        loco_frame_header h;
        if (LOCO_OK != loco_frame_header_decode(f->outbox + off, LOCO_CTL_MAX_PAYLOAD, &h, NULL)) {
            break;
        }
        loco_chan_queue(&f->chan, h.type, h.epoch, h.seq, h.sig,
                        f->outbox + off + LOCO_FRAME_HEADER_BYTES, h.length);
        off += LOCO_FRAME_HEADER_BYTES + h.length;
    }
    f->outbox_len = 0;
    pthread_mutex_unlock(&comm->lock);
    bool had = loco_chan_want_write(&f->chan);
    int r = loco_chan_flush(&f->chan);
    if (r < 0) {
        loco_ftc_lost(comm, strerror(-r));
        return;
    }
    if (had != loco_chan_want_write(&f->chan) || had) {
        loco_ftc_epoll(comm, EPOLL_CTL_MOD);
    }
}

/* ---- loop thread: operations ---------------------------------------------------------------- */

void loco_ftc_op_begin(loco_comm_t comm, const loco_op *op)
{
    loco_ftc *f = comm->ftc;
    if (loco_chan_is_open(&f->chan)) {
        loco_chan_queue(&f->chan, LOCO_FRAME_BEGIN, comm->epoch, op->seq, 0, NULL, 0);
    }
}

void loco_ftc_op_result(loco_comm_t comm, loco_op *op, loco_status st, int blame,
                        const char *reason)
{
    loco_ftc *f = comm->ftc;
    op->result_sent = true;
    if (!loco_chan_is_open(&f->chan)) {
        return; /* a failover is under way: REGISTER reports it */
    }
    loco_msg_outcome o = {.status = st, .blame = blame, .digest = op->info.digest};
    loco_copy_str(o.reason, sizeof o.reason, NULL == reason ? "" : reason);
    uint8_t buf[32 + LOCO_REASON_MAX];
    size_t len = loco_msg_outcome_encode(&o, buf);
    loco_chan_queue(&f->chan, LOCO_FRAME_RESULT, comm->epoch, op->seq, 0, buf, (uint32_t)len);
}

void loco_ftc_op_verdict(loco_comm_t comm, uint64_t seq, loco_verdict_kind v)
{
    loco_ftc *f = comm->ftc;
    if (seq >= f->done_seq) {
        f->done_seq = seq;
        f->done_verdict = v;
    }
}

/* ---- loop thread: pending connections ------------------------------------------------------- */

loco_ack_code loco_ftc_check_state_hello(loco_comm_t comm, const loco_frame_header *h,
                                         const loco_hello *hello, char *reason, size_t cap)
{
    loco_ftc *f = comm->ftc;
    if (NULL == f) {
        snprintf(reason, cap, "this run has no control plane: no state transfer");
        return LOCO_ACK_REFUSED;
    }
    if (hello->nonce != comm->nonce) {
        snprintf(reason, cap, "run nonce 0x%016llx, this run is 0x%016llx",
                 (unsigned long long)hello->nonce, (unsigned long long)comm->nonce);
        return LOCO_ACK_BAD_NONCE;
    }
    pthread_mutex_lock(&comm->lock);
    bool open = f->xfer_open && h->epoch == f->xfer_epoch && f->n_xfer < LOCO_XFER_MAX_CONNS;
    pthread_mutex_unlock(&comm->lock);
    if (!open || hello->to != (uint32_t)comm->rank || hello->world != (uint32_t)comm->world) {
        snprintf(reason, cap, "no state transfer open here for epoch %u rank %u: retry", h->epoch,
                 hello->to);
        return LOCO_ACK_RETRY;
    }
    return LOCO_ACK_OK;
}

void loco_ftc_take_state_conn(loco_comm_t comm, int fd, const loco_hs *hs)
{
    loco_ftc *f = comm->ftc;
    pthread_mutex_lock(&comm->lock);
    if (NULL == f || !f->xfer_open || f->n_xfer >= LOCO_XFER_MAX_CONNS) {
        pthread_mutex_unlock(&comm->lock);
        close(fd);
        return;
    }
    f->xfer[f->n_xfer].fd = fd;
    f->xfer[f->n_xfer].hs = *hs;
    f->n_xfer++;
    pthread_cond_broadcast(&comm->cond);
    pthread_mutex_unlock(&comm->lock);
}

void loco_ftc_coordinator_address(loco_comm_t comm, char host[LOCO_HOST_MAX], int *port)
{
    loco_ftc *f = comm->ftc;
    loco_copy_str(host, LOCO_HOST_MAX, NULL == f ? "" : f->coord_host);
    *port = NULL == f ? 0 : f->coord_port;
}

/* ---- caller thread -------------------------------------------------------------------------- */

loco_status loco_ftc_post(loco_comm_t comm, loco_frame_type type, uint32_t epoch, uint64_t seq,
                          const uint8_t *payload, uint32_t len, bool request)
{
    loco_ftc *f = comm->ftc;
    pthread_mutex_lock(&comm->lock);
    size_t need = f->outbox_len + LOCO_FRAME_HEADER_BYTES + len;
    if (need > f->outbox_cap) {
        uint8_t *grown = realloc(f->outbox, need * 2);
        if (NULL == grown) {
            pthread_mutex_unlock(&comm->lock);
            return LOCO_ERR_NOMEM;
        }
        f->outbox = grown;
        f->outbox_cap = need * 2;
    }
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = (uint8_t)type,
                           .epoch = epoch, .length = len, .seq = seq};
    loco_frame_header_encode(&h, f->outbox + f->outbox_len);
    if (len > 0) {
        memcpy(f->outbox + f->outbox_len + LOCO_FRAME_HEADER_BYTES, payload, len);
    }
    f->outbox_len = need;
    if (request) {
        uint8_t *copy = malloc(len + 1);
        if (NULL != copy) {
            memcpy(copy, payload, len);
            free(f->req);
            f->req = copy;
            f->req_len = len;
            f->req_epoch = epoch;
            f->req_active = true;
        }
    }
    pthread_mutex_unlock(&comm->lock);
    loco_ftc_wake(comm);
    return LOCO_OK;
}

void loco_ftc_end_request(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    comm->ftc->req_active = false;
    pthread_mutex_unlock(&comm->lock);
}

bool loco_ftc_superseded(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    if (NULL == f) {
        return false;
    }
    pthread_mutex_lock(&comm->lock);
    bool newer = f->plan_gen != f->exec_gen || '\0' != f->fatal[0] || f->evicted;
    pthread_mutex_unlock(&comm->lock);
    return newer;
}
