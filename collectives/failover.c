/* collectives/failover.c — how a worker reaches a coordinator (ft_impl.h): dialing it as a
 * member or as a joiner (following a member's redirect), starting one in this process, and
 * failing over when the link to it breaks or goes silent.
 *
 * Failover: a helper thread walks the members in rank order, skipping hosts of coordinators
 * already lost. A dead candidate refuses the connection; a live one accepts it into its
 * coordinator listener's backlog and answers once it serves. A member starts a coordinator in
 * its own process when its turn comes (with the state it holds: epoch, members, counts, step),
 * so every survivor picks the same one. The loop thread then re-registers with it, reporting the
 * operation awaiting its verdict, and re-sends the caller's pending request. A joiner not yet
 * admitted redoes its join through config.join instead.
 */
#include "collectives/ft_impl.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define REDIRECTS_MAX 4

/* ---- dialing -------------------------------------------------------------------------------- */

/* Wait (blocking, before the loop runs or on the failover thread) for one frame. */
loco_status loco_ftc_wait_frame(loco_chan *ch, uint64_t deadline_ns, loco_error *err)
{
    for (;;) {
        loco_error e = {0};
        int r = loco_chan_read(ch, &e);
        if (r > 0) {
            return LOCO_OK;
        }
        if (r < 0) {
            return loco_error_set(err, e.status ? e.status : LOCO_ERR_PEER_LOST, "%s", e.msg);
        }
        uint64_t now = loco_now_ns();
        if (now >= deadline_ns) {
            return loco_error_set(err, LOCO_ERR_TIMEOUT, "%s: no answer in time", ch->name);
        }
        struct pollfd p = {.fd = ch->fd, .events = POLLIN};
        uint64_t ms = (deadline_ns - now) / 1000000 + 1;
        poll(&p, 1, ms > 1000 ? 1000 : (int)ms);
    }
}

loco_status loco_ftc_flush_blocking(loco_chan *ch, uint64_t deadline_ns, loco_error *err)
{
    while (loco_chan_want_write(ch)) {
        int r = loco_chan_flush(ch);
        if (r < 0) {
            return loco_error_errno(err, LOCO_ERR_PEER_LOST, -r, "%s", ch->name);
        }
        if (loco_now_ns() >= deadline_ns) {
            return loco_error_set(err, LOCO_ERR_TIMEOUT, "%s: cannot send", ch->name);
        }
        struct pollfd p = {.fd = ch->fd, .events = POLLOUT};
        poll(&p, 1, 10);
    }
    return LOCO_OK;
}

/* A joiner: dial `target` (a member or the coordinator), follow a redirect to the coordinator,
 * ask to join. On success *ch is the coordinator link, *id the member id it got. */
loco_status loco_ftc_dial_as_joiner(const loco_comm_config *cfg, const uint8_t key[32],
                                      loco_member *self, const char *target, loco_chan *ch,
                                      uint32_t *id, uint64_t *nonce, char chost[LOCO_HOST_MAX],
                                      int *cport, uint64_t deadline_ns, loco_error *err)
{
    char host[256];
    int port = 0;
    LOCO_TRY(loco_net_split_hostport(target, host, sizeof host, &port, err));
    for (int hop = 0; hop <= REDIRECTS_MAX; hop++) {
        loco_hello hello = {.nonce = *nonce, .from = self->id, .kind = LOCO_CONN_JOIN,
                            .streams = 1, .flags = cfg->integrity ? LOCO_HELLO_INTEGRITY : 0};
        int fd = -1;
        loco_hs hs;
        loco_error e = {0};
        loco_status st = loco_auth_dial(host, port, key, 0, &hello, deadline_ns, &fd, &hs, &e);
        if (LOCO_OK != st) {
            return loco_error_set(err, st, "join: %s", e.msg);
        }
        *nonce = hs.nonce;
        if ('\0' == self->host[0]) {
            loco_net_local_host(fd, self->host, sizeof self->host);
        }
        char name[300];
        snprintf(name, sizeof name, "join link to %s:%d", host, port);
        loco_chan_open(ch, fd, name, LOCO_CTL_MAX_PAYLOAD, &hs, true, cfg->integrity);
        uint8_t req[4 + LOCO_MEMBER_BYTES];
        loco_member rec = *self;
        rec.id = 0;
        size_t len = loco_join_req_encode(self->id, &rec, req);
        loco_chan_queue(ch, LOCO_FRAME_JOIN_REQ, 0, 0, 0, req, (uint32_t)len);
        st = loco_ftc_flush_blocking(ch, deadline_ns, &e);
        if (LOCO_OK == st) {
            st = loco_ftc_wait_frame(ch, deadline_ns, &e);
        }
        if (LOCO_OK != st) {
            loco_chan_close(ch);
            return loco_error_set(err, st, "join: %s:%d: %s", host, port, e.msg);
        }
        if (LOCO_FRAME_REDIRECT == ch->rx.type) {
            uint16_t p16 = 0;
            st = loco_redirect_decode(ch->rx_buf, ch->rx.length, host, &p16, &e);
            loco_chan_close(ch);
            if (LOCO_OK != st) {
                return loco_error_set(err, st, "join: bad redirect: %s", e.msg);
            }
            port = p16;
            continue;
        }
        loco_msg_welcome w;
        if (LOCO_FRAME_WELCOME != ch->rx.type ||
            LOCO_OK != loco_msg_welcome_decode(ch->rx_buf, ch->rx.length, &w, &e) ||
            1 != w.status) {
            loco_chan_close(ch);
            return loco_error_set(err, LOCO_ERR_PROTOCOL, "join: %s:%d answered with %s %s",
                                  host, port, loco_frame_type_name(ch->rx.type), e.msg);
        }
        *id = w.id;
        loco_copy_str(chost, LOCO_HOST_MAX, host);
        *cport = port;
        return LOCO_OK;
    }
    return loco_error_set(err, LOCO_ERR_PROTOCOL, "join: more than %d redirects from %s",
                          REDIRECTS_MAX, target);
}

/* A member: dial the coordinator at host:port and authenticate (REGISTER follows). */
loco_status loco_ftc_dial_member(const loco_comm_config *cfg, const uint8_t key[32],
                                   uint64_t nonce, uint32_t id, const char *host, int port,
                                   uint64_t deadline_ns, loco_chan *ch, loco_error *err)
{
    loco_hello hello = {.nonce = nonce, .from = id, .kind = LOCO_CONN_COORD, .streams = 1,
                        .flags = cfg->integrity ? LOCO_HELLO_INTEGRITY : 0};
    int fd = -1;
    loco_hs hs;
    LOCO_TRY(loco_auth_dial(host, port, key, 0, &hello, deadline_ns, &fd, &hs, err));
    char name[300];
    snprintf(name, sizeof name, "coordinator link (%s:%d)", host, port);
    loco_chan_open(ch, fd, name, LOCO_CTL_MAX_PAYLOAD, &hs, true, cfg->integrity);
    return LOCO_OK;
}

/* ---- a coordinator in this process -------------------------------------------------------- */

loco_status loco_ftc_start_coordinator(loco_comm_t comm, bool takeover, uint32_t lost_host,
                                         loco_error *err)
{
    loco_ftc *f = comm->ftc;
    pthread_mutex_lock(&comm->lock);
    bool have = NULL != comm->coord;
    loco_coord_snapshot snap = {.takeover = takeover, .epoch = comm->epoch, .world = comm->world,
                                .members = comm->members, .counts = f->counts, .step = f->step,
                                .nonce = comm->nonce, .lost_host = lost_host,
                                .ops_committed = f->totals.ops_committed,
                                .ops_aborted = f->totals.ops_aborted};
    loco_status st = LOCO_OK;
    if (!have) {
        loco_coord *c = NULL;
        st = loco_coord_start_embedded(&c, &comm->cfg, comm->key, comm->coord_listen_fd, &snap,
                                       err);
        comm->coord = c;
    }
    pthread_mutex_unlock(&comm->lock);
    if (LOCO_OK == st && !have) {
        LOCO_INFO("rank %d: %s the coordinator", comm->rank, takeover ? "took over as" : "hosts");
    }
    return st;
}

/* ---- failover ------------------------------------------------------------------------------ */

/* Snapshot what the failover thread needs, then start it. */
typedef struct failover_job {
    loco_comm_t comm;
    loco_comm_config cfg;
    uint8_t key[32];
    uint64_t nonce;
    uint32_t my_id, lost;
    bool joiner;
    loco_member self;
    int ncand;
    loco_member *cand; /* (ncand) in the order every member tries them */
} failover_job;

static void *ftc_failover_main(void *arg);

/* The member whose coordinator listener is at the coordinator's address (LOCO_ID_ANY: none, e.g.
 * an external coordinator). A joiner is sent to the coordinator by address only; without its
 * member id a takeover would wait for the lost host to re-register until its deadline. */
static uint32_t hosting_member(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    uint32_t id = LOCO_ID_ANY;
    pthread_mutex_lock(&comm->lock);
    for (int r = 0; r < comm->world && LOCO_COORD_EXTERNAL != comm->cfg.ft.coordinator; r++) {
        const loco_member *m = &comm->members[r];
        if (m->cport == f->coord_port && 0 == strcmp(m->host, f->coord_host)) {
            id = m->id;
        }
    }
    pthread_mutex_unlock(&comm->lock);
    return id;
}

void loco_ftc_lost(loco_comm_t comm, const char *why)
{
    loco_ftc *f = comm->ftc;
    if (f->lost) {
        return;
    }
    f->lost = true;
    if (loco_chan_is_open(&f->chan)) {
        epoll_ctl(comm->epfd, EPOLL_CTL_DEL, f->chan.fd, NULL);
        loco_chan_close(&f->chan);
    }
    if (LOCO_ID_ANY == f->coord_id && comm->admitted) {
        f->coord_id = hosting_member(comm); /* a joiner learnt only the coordinator's address */
    }
    if (f->n_failed_hosts < 64 && LOCO_ID_ANY != f->coord_id) {
        f->failed_hosts[f->n_failed_hosts++] = f->coord_id;
    }
    LOCO_WARN("rank %d: lost the coordinator (%s): finding the next one", comm->rank, why);
    failover_job *job = calloc(1, sizeof *job);
    if (NULL == job) {
        return;
    }
    job->comm = comm;
    job->cfg = comm->cfg;
    memcpy(job->key, comm->key, 32);
    job->nonce = comm->nonce;
    job->my_id = comm->my_id;
    job->lost = f->coord_id;
    pthread_mutex_lock(&comm->lock);
    job->joiner = !comm->admitted;
    job->self = comm->admitted && comm->rank >= 0 ? comm->members[comm->rank] : comm->members[0];
    job->cand = calloc((size_t)comm->world + 1, sizeof *job->cand);
    /* Every member walks the same order (rank order of its epoch: survivors keep their order
     * from one epoch to the next). Only hosts of lost coordinators are skipped — a local view
     * of who is alive is not shared (a member re-wiring looks gone to one still in the old
     * epoch) — so a dead candidate is skipped by its refused connection, the same for all. */
    for (int r = 0; r < comm->world && NULL != job->cand && comm->admitted; r++) {
        bool skip = false;
        for (int k = 0; k < f->n_failed_hosts && !skip; k++) {
            skip = f->failed_hosts[k] == comm->members[r].id;
        }
        if (!skip) {
            job->cand[job->ncand++] = comm->members[r];
        }
    }
    f->failover_running = true;
    f->failover_ready = false;
    f->totals.failovers++;
    pthread_mutex_unlock(&comm->lock);
    if (0 != pthread_create(&f->failover_thread, NULL, ftc_failover_main, job)) {
        pthread_mutex_lock(&comm->lock);
        f->failover_running = false;
        pthread_mutex_unlock(&comm->lock);
        free(job->cand);
        free(job);
    }
}

static void *ftc_failover_main(void *arg)
{
    failover_job *job = arg;
    loco_comm_t comm = job->comm;
    loco_ftc *f = comm->ftc;
    uint64_t deadline = loco_now_ns() + (uint64_t)(job->cfg.ft.sync_timeout_s * 1e9);
    double per_try = job->cfg.peer_timeout_s > 1 ? job->cfg.peer_timeout_s : 1.0;
    loco_chan ch = {.fd = -1};
    char host[LOCO_HOST_MAX] = "";
    int port = 0;
    uint32_t id = LOCO_ID_ANY;
    char last[256] = "no candidate";
    bool found = false;
    while (!found && loco_now_ns() < deadline) {
        pthread_mutex_lock(&comm->lock);
        bool stop = comm->stop;
        pthread_mutex_unlock(&comm->lock);
        if (stop) {
            break;
        }
        if (job->joiner) {
            loco_error e = {0};
            uint32_t got = 0;
            uint64_t try_deadline = loco_now_ns() + (uint64_t)(per_try * 1e9);
            if (LOCO_OK == loco_ftc_dial_as_joiner(&job->cfg, job->key, &job->self, job->cfg.join, &ch,
                                              &got, &job->nonce, host, &port, try_deadline, &e)) {
                id = got;
                found = true;
                break;
            }
            snprintf(last, sizeof last, "%.250s", e.msg);
        }
        for (int k = 0; k < job->ncand && !found && !job->joiner; k++) {
            const loco_member *m = &job->cand[k];
            if (m->id == job->my_id) {
                loco_error e = {0};
                if (LOCO_OK != loco_ftc_start_coordinator(comm, true, job->lost, &e)) {
                    snprintf(last, sizeof last, "starting a coordinator here: %.200s", e.msg);
                    continue;
                }
            }
            loco_error e = {0};
            uint64_t try_deadline = loco_now_ns() + (uint64_t)(per_try * 1e9);
            if (LOCO_OK == loco_ftc_dial_member(&job->cfg, job->key, job->nonce, job->my_id, m->host,
                                           m->cport, try_deadline, &ch, &e)) {
                loco_copy_str(host, sizeof host, m->host);
                port = m->cport;
                id = m->id;
                found = true;
            } else {
                snprintf(last, sizeof last, "member %u at %.64s:%u: %.150s", m->id, m->host,
                         m->cport, e.msg);
            }
        }
        if (!found) {
            struct timespec pause = {.tv_sec = 0, .tv_nsec = 100000000};
            nanosleep(&pause, NULL);
        }
    }
    pthread_mutex_lock(&comm->lock);
    f->failover_ready = true;
    f->failover_running = false;
    f->failover_found = found;
    if (found) {
        f->failover_chan = ch; /* the loop takes the link over */
        loco_copy_str(f->failover_host, sizeof f->failover_host, host);
        f->failover_port = port;
        f->failover_id = job->joiner ? LOCO_ID_ANY : id;
        f->failover_error[0] = '\0';
    } else {
        loco_chan_close(&ch);
        snprintf(f->failover_error, sizeof f->failover_error, "no coordinator reachable: %s",
                 last);
    }
    pthread_mutex_unlock(&comm->lock);
    loco_ftc_wake(comm);
    free(job->cand);
    free(job);
    return NULL;
}

/* The failover thread finished: adopt its link, register, re-send the pending request. */
void loco_ftc_reconnected(loco_comm_t comm)
{
    loco_ftc *f = comm->ftc;
    pthread_mutex_lock(&comm->lock);
    bool ready = f->failover_ready;
    bool found = f->failover_found;
    pthread_mutex_unlock(&comm->lock);
    if (!ready) {
        return;
    }
    pthread_join(f->failover_thread, NULL);
    pthread_mutex_lock(&comm->lock);
    f->failover_ready = false;
    pthread_mutex_unlock(&comm->lock);
    if (!found) {
        LOCO_ERROR("rank %d: %s", comm->rank, f->failover_error);
        loco_loop_break_epoch(comm, -1, LOCO_ERR_PEER_LOST, false, f->failover_error);
        loco_request *cur = comm->cur;
        if (NULL != cur) { /* nobody can give its verdict any more */
            loco_msg_outcome v = {.status = LOCO_ERR_PEER_LOST, .blame = -1,
                                  .verdict = LOCO_VERDICT_ABORTED};
            loco_copy_str(v.reason, sizeof v.reason, f->failover_error);
            loco_loop_on_verdict(comm, comm->epoch, cur->op.seq, &v);
        }
        pthread_mutex_lock(&comm->lock);
        loco_copy_str(f->fatal, sizeof f->fatal, f->failover_error);
        pthread_cond_broadcast(&comm->cond); /* a waiting caller sees the error */
        pthread_mutex_unlock(&comm->lock);
        return;
    }
    f->chan = f->failover_chan;
    memset(&f->failover_chan, 0, sizeof f->failover_chan);
    f->failover_chan.fd = -1;
    loco_copy_str(f->coord_host, sizeof f->coord_host, f->failover_host);
    f->coord_port = f->failover_port;
    f->coord_id = f->failover_id;
    f->lost = false;
    LOCO_INFO("rank %d: coordinator now at %s:%d", comm->rank, f->coord_host, f->coord_port);
    if (comm->admitted) {
        uint32_t len = 0;
        uint8_t *reg = loco_ftc_register_payload(comm, LOCO_REG_RECONNECT, &len);
        if (NULL != reg) {
            loco_chan_queue(&f->chan, LOCO_FRAME_REGISTER, comm->epoch, 0, 0, reg, len);
            free(reg);
        }
    }
    pthread_mutex_lock(&comm->lock);
    if (f->req_active) {
        loco_chan_queue(&f->chan, LOCO_FRAME_RECONF, f->req_epoch, 0, 0, f->req, f->req_len);
    }
    f->outbox_len = 0;
    pthread_mutex_unlock(&comm->lock);
    loco_ftc_epoll(comm, EPOLL_CTL_ADD);
    f->next_ping_ns = loco_now_ns();
}

