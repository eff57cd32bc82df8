/* collectives/coord.c — the coordinator's event loop: its listener, one authenticated
 * connection per member or joiner, registration, heartbeats, and dispatching each control
 * message to the decisions of coord_plan.c. Also the public life cycle of coordinator.h and the
 * embedded start used by workers (ft_impl.h).
 *
 * Connections: accept -> handshake (kinds COORD and JOIN only) -> REGISTER (a member) or
 * JOIN_REQ (a joiner, who gets an id and waits for a sync point) -> frames. A connection that
 * closes without a goodbye loses its member; one that stays silent past peer_timeout_s gets it
 * evicted (a stopped process, a frozen link).
 */
#define _GNU_SOURCE /* accept4 */
#include "collectives/coord_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define TAG_WAKE (1ull << 40)
#define TAG_TIMER (2ull << 40)
#define TAG_LISTEN (3ull << 40)
#define HANDSHAKE_NS 5000000000ull
#define OUT_LIMIT (64u << 20) /* a member that reads nothing is dropped past this backlog */

/* ---- helpers -------------------------------------------------------------------------------- */

void coord_event(loco_coord *c, const char *kind, const char *fmt, ...)
{
    if (NULL == c->events) {
        return;
    }
    char fields[768] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof fields, fmt, ap);
    va_end(ap);
    fprintf(c->events, "{\"t\": %.6f, \"event\": \"%s\", \"epoch\": %u%s%s}\n",
            (double)(loco_now_ns() - c->start_ns) * 1e-9, kind, c->epoch, fields[0] ? ", " : "",
            fields);
    fflush(c->events);
}

int coord_find_member(const loco_coord *c, uint32_t id)
{
    for (int i = 0; i < c->nmem; i++) {
        if (c->mem[i].m.id == id) {
            return i;
        }
    }
    return -1;
}

int coord_add_member(loco_coord *c, const loco_member *m, cm_state state)
{
    if (c->nmem == c->capmem) {
        int cap = c->capmem ? 2 * c->capmem : 16;
        coord_member *grown = realloc(c->mem, (size_t)cap * sizeof *grown);
        int *ranks = realloc(c->ranks, (size_t)cap * sizeof *ranks);
        if (NULL == grown || NULL == ranks) {
            if (NULL != grown) {
                c->mem = grown;
            }
            if (NULL != ranks) {
                c->ranks = ranks;
            }
            return -1;
        }
        c->mem = grown;
        c->ranks = ranks;
        c->capmem = cap;
    }
    coord_member *cm = &c->mem[c->nmem];
    memset(cm, 0, sizeof *cm);
    cm->m = *m;
    cm->state = state;
    cm->conn = -1;
    cm->last_heard_ns = loco_now_ns();
    cm->progress.waiting_on = -1;
    if (m->id >= c->next_id) {
        c->next_id = m->id + 1;
    }
    return c->nmem++;
}

loco_status coord_set_table(loco_coord *c, uint32_t epoch, const loco_member *table, int n)
{
    for (int r = 0; r < n; r++) {
        int i = coord_find_member(c, table[r].id);
        if (i < 0) {
            i = coord_add_member(c, &table[r], CM_MEMBER);
            if (i < 0) {
                return LOCO_ERR_NOMEM;
            }
        }
        c->mem[i].m = table[r];
        if (CM_PENDING == c->mem[i].state) {
            c->mem[i].state = CM_MEMBER;
        }
        c->ranks[r] = i;
    }
    c->world = n;
    c->epoch = epoch;
    c->have_table = true;
    c->broken = false;
    c->op_seq = c->decided_seq = 0;
    for (int i = 0; i < c->nmem; i++) {
        c->mem[i].begun_seq = c->mem[i].result_seq = 0;
    }
    return LOCO_OK;
}

int coord_rank_of(const loco_coord *c, int member)
{
    for (int r = 0; r < c->world; r++) {
        if (c->ranks[r] == member) {
            return r;
        }
    }
    return -1;
}

static void conn_close(loco_coord *c, int k)
{
    coord_conn *cc = &c->conns[k];
    if (cc->fd < 0) {
        return;
    }
    epoll_ctl(c->epfd, EPOLL_CTL_DEL, cc->fd, NULL);
    if (loco_chan_is_open(&cc->chan)) {
        loco_chan_close(&cc->chan); /* closes the fd */
    } else {
        close(cc->fd);
    }
    if (cc->member >= 0 && c->mem[cc->member].conn == k) {
        c->mem[cc->member].conn = -1;
    }
    cc->fd = -1;
    cc->member = -1;
    cc->authed = false;
}

void coord_send(loco_coord *c, int member, loco_frame_type type, uint32_t epoch, uint64_t seq,
                const uint8_t *payload, uint32_t len)
{
    if (member < 0 || c->mem[member].conn < 0) {
        return;
    }
    coord_conn *cc = &c->conns[c->mem[member].conn];
    if (cc->chan.out_len - cc->chan.out_off > OUT_LIMIT ||
        LOCO_OK != loco_chan_queue(&cc->chan, (uint8_t)type, epoch, seq, 0, payload, len)) {
        LOCO_WARN("coordinator: dropping member %u: it does not read its messages",
                  c->mem[member].m.id);
        conn_close(c, c->mem[member].conn);
    }
}

void coord_publish_stats(loco_coord *c)
{
    loco_coord_stats s = {.counts = c->counts, .epoch = c->epoch, .world = c->world,
                          .ops_committed = c->ops_committed, .ops_aborted = c->ops_aborted,
                          .reconfigurations = c->reconfigs};
    bool active = false;
    for (int i = 0; i < c->nmem; i++) {
        s.alive += c->mem[i].conn >= 0;
        active = active || CM_MEMBER == c->mem[i].state || CM_PENDING == c->mem[i].state;
    }
    s.run_over = c->any_registered && !active;
    pthread_mutex_lock(&c->lock);
    c->stats = s;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* ---- connections ---------------------------------------------------------------------------- */

static loco_ack_code coord_check_hello(void *ctx, const loco_frame_header *h,
                                       const loco_hello *hello, char *reason, size_t cap)
{
    loco_coord *c = ctx;
    (void)h;
    if (LOCO_CONN_COORD != hello->kind && LOCO_CONN_JOIN != hello->kind) {
        snprintf(reason, cap, "a connection of kind %u to the coordinator (members and joiners "
                              "only)", hello->kind);
        return LOCO_ACK_BAD_PEER;
    }
    if ((0 != (hello->flags & LOCO_HELLO_INTEGRITY)) != c->cfg.integrity) {
        snprintf(reason, cap, "frame integrity is %s there and %s at the coordinator",
                 (hello->flags & LOCO_HELLO_INTEGRITY) ? "on" : "off",
                 c->cfg.integrity ? "on" : "off");
        return LOCO_ACK_BAD_PEER;
    }
    return LOCO_ACK_OK;
}

static void coord_accept(loco_coord *c)
{
    for (;;) {
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            return;
        }
        int k = -1;
        for (int i = 0; i < c->nconns; i++) {
            if (c->conns[i].fd < 0) {
                k = i;
                break;
            }
        }
        if (k < 0) {
            int cap = c->nconns ? 2 * c->nconns : 16;
            coord_conn *grown = realloc(c->conns, (size_t)cap * sizeof *grown);
            if (NULL == grown) {
                close(fd);
                continue;
            }
            for (int i = c->nconns; i < cap; i++) {
                memset(&grown[i], 0, sizeof grown[i]);
                grown[i].fd = -1;
                grown[i].member = -1;
                grown[i].chan.fd = -1;
            }
            c->conns = grown;
            k = c->nconns;
            c->nconns = cap;
        }
        coord_conn *cc = &c->conns[k];
        cc->fd = fd;
        cc->authed = false;
        cc->member = -1;
        cc->deadline_ns = loco_now_ns() + HANDSHAKE_NS;
        loco_net_peer_name(fd, cc->peer, sizeof cc->peer);
        loco_net_tune(fd, c->cfg.peer_timeout_s);
        loco_hs_accept(&cc->hs, fd, c->key, c->nonce);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = (uint64_t)k};
        epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

/* A member's REGISTER: match it to the table (a standalone coordinator learns the table from
 * the first one), bind the connection and welcome it. */
static void coord_register(loco_coord *c, int k, const loco_msg_register *reg)
{
    coord_conn *cc = &c->conns[k];
    if (!c->have_table && reg->n > 0) {
        if (LOCO_OK != coord_set_table(c, reg->epoch, reg->table, reg->n)) {
            conn_close(c, k);
            return;
        }
        c->counts = reg->counts;
        if (0 == reg->epoch) {
            c->counts.started = (uint32_t)reg->n;
        }
        c->step = reg->step;
        coord_event(c, "table", "\"world\": %d", reg->n);
    } else if (c->takeover && reg->epoch > c->epoch && reg->n > 0) {
        coord_set_table(c, reg->epoch, reg->table, reg->n); /* the lost coordinator's last plan */
        c->takeover = true;
    }
    int i = coord_find_member(c, reg->id);
    loco_msg_welcome w = {.id = reg->id, .epoch = c->epoch, .status = 0};
    if (i < 0 || (CM_MEMBER != c->mem[i].state && CM_PENDING != c->mem[i].state)) {
        w.status = 2;
        LOCO_WARN("coordinator: %s registered as member %u, which is not a member (%s)",
                  cc->peer, reg->id, i < 0 ? "unknown" : "removed earlier");
    }
    uint8_t buf[12];
    size_t len = loco_msg_welcome_encode(&w, buf);
    if (2 == w.status) {
        loco_chan_queue(&cc->chan, LOCO_FRAME_WELCOME, c->epoch, 0, 0, buf, (uint32_t)len);
        loco_chan_flush(&cc->chan);
        conn_close(c, k);
        return;
    }
    coord_member *m = &c->mem[i];
    if (m->conn >= 0 && m->conn != k) {
        conn_close(c, m->conn); /* a stale connection of the same member */
    }
    m->conn = k;
    cc->member = i;
    m->registered = true;
    m->last_heard_ns = loco_now_ns();
    c->any_registered = true;
    coord_send(c, i, LOCO_FRAME_WELCOME, c->epoch, 0, buf, (uint32_t)len);
    coord_event(c, "register", "\"id\": %u, \"flags\": %u, \"member_epoch\": %u", reg->id,
                reg->flags, reg->epoch);
    coord_on_register(c, i, reg);
}

/* A joiner's JOIN_REQ: give it an id and keep it waiting for a sync point. */
static void coord_join_request(loco_coord *c, int k, uint32_t wanted, loco_member *self)
{
    coord_conn *cc = &c->conns[k];
    self->id = wanted;
    if (LOCO_ID_ANY == wanted || coord_find_member(c, wanted) >= 0) {
        self->id = c->next_id;
    }
    if ('\0' == self->host[0] || 0 == strcmp(self->host, "0.0.0.0")) {
        char name[96];
        loco_net_peer_name(cc->fd, name, sizeof name);
        char *colon = strrchr(name, ':');
        if (NULL != colon) {
            *colon = '\0';
        }
        loco_copy_str(self->host, sizeof self->host, name);
    }
    int i = coord_add_member(c, self, CM_PENDING);
    if (i < 0) {
        conn_close(c, k);
        return;
    }
    c->mem[i].conn = k;
    c->mem[i].registered = true;
    cc->member = i;
    loco_msg_welcome w = {.id = self->id, .epoch = c->epoch, .status = 1};
    uint8_t buf[12];
    size_t len = loco_msg_welcome_encode(&w, buf);
    coord_send(c, i, LOCO_FRAME_WELCOME, c->epoch, 0, buf, (uint32_t)len);
    LOCO_INFO("coordinator: %s wants to join; member id %u, admitted at the next sync point",
              cc->peer, self->id);
    coord_event(c, "join_request", "\"id\": %u, \"host\": \"%s\", \"port\": %u", self->id,
                self->host, self->port);
}

/* One frame from an authenticated connection. */
static void coord_on_frame(loco_coord *c, int k)
{
    coord_conn *cc = &c->conns[k];
    const loco_frame_header *h = &cc->chan.rx;
    const uint8_t *p = cc->chan.rx_buf;
    loco_error e = {0};
    int i = cc->member;
    if (i < 0) { /* first frame: REGISTER from a member, JOIN_REQ from a joiner */
        if (LOCO_CONN_COORD == cc->hs.hello.kind && LOCO_FRAME_REGISTER == h->type) {
            loco_msg_register reg;
            if (LOCO_OK == loco_msg_register_decode(p, h->length, &reg, &e)) {
                coord_register(c, k, &reg);
                loco_msg_register_free(&reg);
                return;
            }
        } else if (LOCO_CONN_JOIN == cc->hs.hello.kind && LOCO_FRAME_JOIN_REQ == h->type) {
            uint32_t wanted = 0;
            loco_member self;
            if (LOCO_OK == loco_join_req_decode(p, h->length, &wanted, &self, &e)) {
                coord_join_request(c, k, wanted, &self);
                return;
            }
        } else {
            snprintf(e.msg, sizeof e.msg, "%s before registering", loco_frame_type_name(h->type));
        }
        LOCO_WARN("coordinator: dropped %s: %s", cc->peer, e.msg);
        conn_close(c, k);
        return;
    }
    coord_member *m = &c->mem[i];
    m->last_heard_ns = loco_now_ns();
    switch (h->type) {
    case LOCO_FRAME_PING:
        if (h->length > 0 && LOCO_OK == loco_msg_progress_decode(p, h->length, &m->progress, &e)) {
            m->progress.waiting_on = m->progress.waiting_on < c->world ? m->progress.waiting_on : -1;
        }
        return;
    case LOCO_FRAME_BEGIN: coord_on_begin(c, i, h->epoch, h->seq); return;
    case LOCO_FRAME_RESULT: {
        loco_msg_outcome r;
        if (LOCO_OK == loco_msg_outcome_decode(p, h->length, &r, &e)) {
            coord_on_result(c, i, h->epoch, h->seq, &r);
            return;
        }
        break;
    }
    case LOCO_FRAME_RECONF: {
        loco_msg_reconf req;
        if (LOCO_OK == loco_msg_reconf_decode(p, h->length, &req, &e)) {
            coord_on_reconf(c, i, h->epoch, &req); /* takes req's buffers */
            return;
        }
        break;
    }
    case LOCO_FRAME_PLAN_DONE: {
        uint32_t round = 0;
        int32_t status = 0;
        char reason[LOCO_REASON_MAX + 1];
        if (LOCO_OK == loco_msg_round_decode(p, h->length, &round, &status, reason, &e)) {
            coord_on_plan_done(c, i, round, status, reason);
            return;
        }
        break;
    }
    case LOCO_FRAME_BYE:
        coord_member_gone(c, i, CM_FINISHED, "finished");
        return;
    default:
        snprintf(e.msg, sizeof e.msg, "unexpected %s frame", loco_frame_type_name(h->type));
    }
    LOCO_WARN("coordinator: dropped member %u (%s): %s", m->m.id, cc->peer, e.msg);
    int member = cc->member;
    conn_close(c, k);
    coord_member_gone(c, member, CM_DEAD, "broke the control protocol");
}

static void coord_on_readable(loco_coord *c, int k)
{
    coord_conn *cc = &c->conns[k];
    if (!cc->authed) {
        loco_hs_result r = loco_hs_step(&cc->hs, coord_check_hello, c);
        if (LOCO_HS_AGAIN == r) {
            return;
        }
        if (LOCO_HS_ERROR == r) {
            if (LOCO_ERR_PEER_LOST != cc->hs.status) {
                LOCO_WARN("coordinator refused a connection from %s: %s", cc->peer, cc->hs.reason);
                coord_event(c, "refused", "\"peer\": \"%s\"", cc->peer);
            }
            conn_close(c, k);
            return;
        }
        if (0 == c->nonce) {
            c->nonce = cc->hs.nonce; /* standalone: the first authenticated member's run */
        }
        cc->authed = true;
        cc->deadline_ns = loco_now_ns() + (uint64_t)(c->cfg.connect_timeout_s * 1e9);
        char name[128];
        snprintf(name, sizeof name, "coordinator link of %s", cc->peer);
        loco_chan_open(&cc->chan, cc->fd, name, LOCO_CTL_MAX_PAYLOAD, &cc->hs, false,
                       c->cfg.integrity);
    }
    for (int n = 0; n < 64 && cc->fd >= 0; n++) {
        loco_error e = {0};
        int r = loco_chan_read(&cc->chan, &e);
        if (0 == r) {
            return;
        }
        if (r < 0) {
            int member = cc->member;
            bool was_member = member >= 0 && (CM_MEMBER == c->mem[member].state ||
                                              CM_PENDING == c->mem[member].state);
            conn_close(c, k);
            if (was_member) {
                char why[300];
                snprintf(why, sizeof why, "connection lost (%.250s)", e.msg);
                coord_member_gone(c, member, CM_DEAD, why);
            }
            return;
        }
        coord_on_frame(c, k);
    }
}

/* ---- timers --------------------------------------------------------------------------------- */

static void coord_timers(loco_coord *c, uint64_t now)
{
    if (now >= c->next_ping_ns) {
        for (int i = 0; i < c->nmem; i++) {
            if (c->mem[i].conn >= 0 && c->conns[c->mem[i].conn].authed) {
                coord_send(c, i, LOCO_FRAME_PING, c->epoch, 0, NULL, 0);
            }
        }
        c->next_ping_ns = now + (uint64_t)(c->cfg.heartbeat_s * 1e9);
    }
    uint64_t silence = (uint64_t)(c->cfg.peer_timeout_s * 1e9);
    uint64_t boot = (uint64_t)(c->cfg.connect_timeout_s * 1e9);
    for (int i = 0; i < c->nmem; i++) {
        coord_member *m = &c->mem[i];
        if (CM_MEMBER == m->state && m->registered && now > m->last_heard_ns + silence) {
            char why[128];
            snprintf(why, sizeof why, "silent for %.1f s (stopped, or a frozen link)",
                     (double)(now - m->last_heard_ns) * 1e-9);
            coord_member_gone(c, i, CM_EVICTED, why);
        } else if (CM_MEMBER == m->state && !m->registered && !c->takeover &&
                   now > c->start_ns + boot) {
            coord_member_gone(c, i, CM_DEAD, "never registered with the coordinator");
        } else if (CM_PENDING == m->state && now > m->last_heard_ns + silence) {
            coord_member_gone(c, i, CM_DEAD, "a joiner went silent");
        }
    }
    for (int k = 0; k < c->nconns; k++) {
        if (c->conns[k].fd >= 0 && c->conns[k].member < 0 && now > c->conns[k].deadline_ns) {
            LOCO_WARN("coordinator dropped %s: no handshake or registration in time",
                      c->conns[k].peer);
            conn_close(c, k);
        }
    }
    coord_tick(c, now);
}

static void coord_arm_timer(loco_coord *c)
{
    uint64_t t = c->next_ping_ns;
    uint64_t d = coord_next_deadline(c);
    t = d < t ? d : t;
    uint64_t silence = (uint64_t)(c->cfg.peer_timeout_s * 1e9);
    for (int i = 0; i < c->nmem; i++) {
        if ((CM_MEMBER == c->mem[i].state || CM_PENDING == c->mem[i].state) &&
            c->mem[i].last_heard_ns + silence + 1 < t) {
            t = c->mem[i].last_heard_ns + silence + 1;
        }
    }
    uint64_t now = loco_now_ns();
    t = t > now + 1000000 ? t : now + 1000000;
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(t / 1000000000ull),
                                          .tv_nsec = (long)(t % 1000000000ull)}};
    timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void *coord_main(void *arg)
{
    loco_coord *c = arg;
    struct epoll_event events[64];
    for (;;) {
        pthread_mutex_lock(&c->lock);
        bool stop = c->stop;
        pthread_mutex_unlock(&c->lock);
        if (stop) {
            return NULL;
        }
        coord_arm_timer(c);
        int n = epoll_wait(c->epfd, events, 64, -1);
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            uint64_t v;
            if (TAG_WAKE == tag) {
                ssize_t ignored = read(c->evfd, &v, sizeof v);
                (void)ignored;
            } else if (TAG_TIMER == tag) {
                ssize_t ignored = read(c->tfd, &v, sizeof v);
                (void)ignored;
            } else if (TAG_LISTEN == tag) {
                coord_accept(c);
            } else if (tag < (uint64_t)c->nconns && c->conns[tag].fd >= 0) {
                coord_on_readable(c, (int)tag);
            }
        }
        coord_timers(c, loco_now_ns());
        for (int k = 0; k < c->nconns; k++) {
            coord_conn *cc = &c->conns[k];
            if (cc->fd < 0 || !loco_chan_is_open(&cc->chan)) {
                continue;
            }
            if (loco_chan_flush(&cc->chan) < 0) {
                int member = cc->member;
                conn_close(c, k);
                if (member >= 0 && CM_MEMBER == c->mem[member].state) {
                    coord_member_gone(c, member, CM_DEAD, "connection lost while writing");
                }
                continue;
            }
            uint32_t want = EPOLLIN | EPOLLRDHUP | (loco_chan_want_write(&cc->chan) ? EPOLLOUT : 0);
            struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)k};
            epoll_ctl(c->epfd, EPOLL_CTL_MOD, cc->fd, &ev);
        }
        coord_publish_stats(c);
    }
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static loco_status coord_create(loco_coord **out, const loco_comm_config *cfg,
                                const uint8_t key[32], int listen_fd, bool own_listen,
                                const char *events_path, loco_error *err)
{
    loco_coord *c = calloc(1, sizeof *c);
    if (NULL == c) {
        return LOCO_ERR_NOMEM;
    }
    c->cfg = *cfg;
    c->cfg.link_rules = NULL;
    c->cfg.n_link_rules = 0;
    memcpy(c->key, key, 32);
    c->listen_fd = listen_fd;
    c->own_listen = own_listen;
    c->epfd = c->evfd = c->tfd = -1;
    c->lost_host = LOCO_ID_ANY;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->start_ns = loco_now_ns();
    *out = c;
    if (NULL != events_path && '\0' != events_path[0]) {
        c->events = fopen(events_path, "a");
        if (NULL == c->events) {
            return loco_error_errno(err, LOCO_ERR_IO, errno, "coordinator events file %s",
                                    events_path);
        }
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (0 == getsockname(listen_fd, (struct sockaddr *)&ss, &len)) {
        c->port = AF_INET == ss.ss_family ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                          : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->epfd < 0 || c->evfd < 0 || c->tfd < 0) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "coordinator: cannot create its event loop");
    }
    return LOCO_OK;
}

static loco_status coord_run(loco_coord *c, loco_error *err)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev);
    ev.data.u64 = TAG_TIMER;
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->tfd, &ev);
    ev.data.u64 = TAG_LISTEN;
    epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->listen_fd, &ev);
    c->next_ping_ns = loco_now_ns();
    coord_publish_stats(c);
    if (0 != pthread_create(&c->thread, NULL, coord_main, c)) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "coordinator: cannot start its thread");
    }
    c->thread_started = true;
    return LOCO_OK;
}

loco_status loco_coord_start(loco_coord **out, const loco_coord_config *cfg, loco_error *err)
{
    *out = NULL;
    uint8_t key[32];
    bool have = false;
    LOCO_TRY(loco_key_resolve(&cfg->comm, true, key, &have, err));
    char host[256];
    int port = 0;
    const char *colon = strrchr(cfg->listen, ':');
    if (NULL != colon && 0 == strcmp(colon, ":0") && (size_t)(colon - cfg->listen) < sizeof host) {
        memcpy(host, cfg->listen, (size_t)(colon - cfg->listen)); /* any free port */
        host[colon - cfg->listen] = '\0';
    } else {
        LOCO_TRY(loco_net_split_hostport(cfg->listen, host, sizeof host, &port, err));
    }
    int fd = -1, bound = 0;
    LOCO_TRY(loco_net_listen(host, port, &fd, &bound, err));
    loco_coord *c = NULL;
    loco_status st = coord_create(&c, &cfg->comm, key, fd, true, cfg->events_path, err);
    if (LOCO_OK == st) {
        st = coord_run(c, err);
    }
    if (LOCO_OK != st) {
        loco_coord_stop(c);
        if (NULL == c) {
            close(fd);
        }
        return st;
    }
    LOCO_INFO("coordinator listening on %s:%d", host, c->port);
    *out = c;
    return LOCO_OK;
}

loco_status loco_coord_start_embedded(loco_coord **out, const loco_comm_config *cfg,
                                      const uint8_t key[32], int listen_fd,
                                      const loco_coord_snapshot *snap, loco_error *err)
{
    *out = NULL;
    loco_coord *c = NULL;
    const char *events = cfg->ft.events_path[0] ? cfg->ft.events_path : getenv("LOCO_COORD_EVENTS");
    loco_status st = coord_create(&c, cfg, key, listen_fd, false, events, err);
    if (LOCO_OK == st) {
        c->nonce = snap->nonce;
        c->counts = snap->counts;
        c->step = snap->step;
        c->ops_committed = snap->ops_committed;
        c->ops_aborted = snap->ops_aborted;
        st = coord_set_table(c, snap->epoch, snap->members, snap->world);
        if (0 == snap->epoch && !snap->takeover) {
            c->counts.started = (uint32_t)snap->world;
        }
        if (snap->takeover) {
            c->takeover = true;
            c->lost_host = snap->lost_host;
            c->takeover_deadline_ns = loco_now_ns() +
                                      (uint64_t)((2 * c->cfg.peer_timeout_s + 1.0) * 1e9);
            coord_event(c, "takeover", "\"lost_host\": %u", snap->lost_host);
        }
    }
    if (LOCO_OK == st) {
        st = coord_run(c, err);
    }
    if (LOCO_OK != st) {
        loco_coord_stop(c);
        return st;
    }
    *out = c;
    return LOCO_OK;
}

int loco_coord_port(const loco_coord *coord) { return coord->port; }

loco_status loco_coord_wait(loco_coord *c, double timeout_s)
{
    uint64_t deadline = timeout_s < 0 ? UINT64_MAX : loco_now_ns() + (uint64_t)(timeout_s * 1e9);
    pthread_mutex_lock(&c->lock);
    while (!c->stats.run_over && !c->stop) {
        uint64_t now = loco_now_ns();
        if (now >= deadline) {
            pthread_mutex_unlock(&c->lock);
            return LOCO_ERR_TIMEOUT;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait_ns = deadline - now < 200000000ull ? deadline - now : 200000000ull;
        ts.tv_nsec += (long)wait_ns;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    }
    pthread_mutex_unlock(&c->lock);
    return LOCO_OK;
}

void loco_coord_get_stats(loco_coord *c, loco_coord_stats *stats)
{
    pthread_mutex_lock(&c->lock);
    *stats = c->stats;
    pthread_mutex_unlock(&c->lock);
}

void loco_coord_stop(loco_coord *c)
{
    if (NULL == c) {
        return;
    }
    if (c->thread_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        uint64_t one = 1;
        ssize_t ignored = write(c->evfd, &one, sizeof one);
        (void)ignored;
        pthread_join(c->thread, NULL);
    }
    for (int k = 0; k < c->nconns; k++) {
        if (c->conns[k].fd >= 0) {
            conn_close(c, k);
        }
    }
    for (int i = 0; i < c->nmem; i++) {
        loco_msg_reconf_free(&c->mem[i].req);
    }
    loco_plan_free(&c->plan);
    if (c->epfd >= 0 && c->listen_fd >= 0) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->listen_fd, NULL);
    }
    int fds[3] = {c->epfd, c->evfd, c->tfd};
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    if (c->own_listen && c->listen_fd >= 0) {
        close(c->listen_fd);
    }
    if (NULL != c->events) {
        fclose(c->events);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    free(c->conns);
    free(c->mem);
    free(c->ranks);
    free(c);
}
