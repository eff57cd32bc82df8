/* collectives/comm.c — the public API of collectives/comm.h: communicator life cycle, argument
 * checks, requests (a fixed pool), submitting operations to the event loop and waiting; and the
 * per-epoch arrays (connections, links, peer state) that membership.c rebuilds for each epoch.
 *
 * The caller's thread only validates, fills a request and wakes the loop (eventfd); the loop
 * thread does all I/O and completes the request under comm->lock, signalling comm->cond.
 */
#include "collectives/ft_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* ---- configuration -------------------------------------------------------------------------- */

static loco_status comm_check_config(const loco_comm_config *cfg, loco_error *err)
{
    if (NULL == cfg || LOCO_COMM_CONFIG_VERSION != cfg->version) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "loco_comm_config version %d, expected %d (start from "
                              "LOCO_COMM_CONFIG_INIT)",
                              NULL == cfg ? -1 : cfg->version, LOCO_COMM_CONFIG_VERSION);
    }
    if (cfg->streams < 1 || cfg->streams > LOCO_MAX_STREAMS) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "transport.streams = %d (allowed 1..%d)",
                              cfg->streams, LOCO_MAX_STREAMS);
    }
    if (cfg->chunk_bytes < 4096 || cfg->chunk_bytes > (16u << 20)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "transport.chunk = %zu bytes (allowed 4KiB..16MiB)",
                              cfg->chunk_bytes);
    }
    if (!(cfg->connect_timeout_s > 0) || !(cfg->heartbeat_s > 0) || !(cfg->peer_timeout_s > 0) ||
        !(cfg->op_timeout_s > 0) || !(cfg->mpi_timeout_s > 0)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "transport timeouts must be positive (connect %g, heartbeat %g, "
                              "peer %g, op %g, mpi %g s)",
                              cfg->connect_timeout_s, cfg->heartbeat_s, cfg->peer_timeout_s,
                              cfg->op_timeout_s, cfg->mpi_timeout_s);
    }
    const loco_ft_config *ft = &cfg->ft;
    if (ft->coordinator > LOCO_COORD_NONE || ft->straggler > LOCO_STRAGGLER_WAIT ||
        !(ft->op_deadline_s > 0) || !(ft->deadline_min_s > 0) ||
        !(ft->deadline_max_s >= ft->deadline_min_s) || !(ft->deadline_k >= 0) ||
        ft->deadline_window < 4 || ft->deadline_window > 1024 || !(ft->straggler_wait_s > 0) ||
        !(ft->join_timeout_s > 0) || !(ft->sync_timeout_s > 0) || ft->transfer_streams < 0 ||
        ft->transfer_streams > LOCO_MAX_STREAMS || ft->coordinator_port < 0 ||
        ft->coordinator_port > 65535) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "ft: invalid settings (coordinator %d, straggler %d, deadlines "
                              "%g/%g..%g s k %g window %d, waits %g/%g/%g s, transfer_streams %d, "
                              "coordinator_port %d)",
                              (int)ft->coordinator, (int)ft->straggler, ft->op_deadline_s,
                              ft->deadline_min_s, ft->deadline_max_s, ft->deadline_k,
                              ft->deadline_window, ft->straggler_wait_s, ft->join_timeout_s,
                              ft->sync_timeout_s, ft->transfer_streams, ft->coordinator_port);
    }
    if (LOCO_COORD_EXTERNAL == ft->coordinator && '\0' == ft->coordinator_addr[0]) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "ft.coordinator is external but ft.coordinator_addr is empty; "
                              "allowed: HOST:PORT of `loco coordinator --listen`");
    }
    if (LOCO_BOOTSTRAP_ADMIT == cfg->bootstrap && '\0' == cfg->join[0]) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "joining a running group needs transport.join (HOST:PORT of any "
                              "member or of the coordinator)");
    }
    if (cfg->peer_timeout_s < 2 * cfg->heartbeat_s) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "transport.peer_timeout (%g s) must be at least twice the heartbeat "
                              "(%g s)",
                              cfg->peer_timeout_s, cfg->heartbeat_s);
    }
    LOCO_TRY(loco_link_config_check(&cfg->link, err));
    if (cfg->n_link_rules < 0 || (cfg->n_link_rules > 0 && NULL == cfg->link_rules)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "link_rules: %d rules but no array",
                              cfg->n_link_rules);
    }
    for (int i = 0; i < cfg->n_link_rules; i++) {
        LOCO_TRY(loco_link_config_check(&cfg->link_rules[i].link, err));
    }
    return LOCO_OK;
}

/* The link from this rank to `to`: the default, overridden by the last matching rule. */
const loco_link_config *loco_comm_link_for(const loco_comm_t comm, int to)
{
    const loco_link_config *link = &comm->cfg.link;
    for (int i = 0; i < comm->cfg.n_link_rules; i++) {
        const loco_link_rule *r = &comm->rules[i];
        if ((r->from < 0 || r->from == comm->rank) && (r->to < 0 || r->to == to)) {
            link = &r->link;
        }
    }
    return link;
}

/* ---- init / free ---------------------------------------------------------------------------- */

void loco_comm_epoch_free(loco_comm_t comm)
{
    for (int i = 0; i < comm->nconns && NULL != comm->conns; i++) {
        loco_conn *c = &comm->conns[i];
        if (c->fd >= 0) {
            close(c->fd);
        }
        free(c->rx_buf);
        free(c->txq);
        free(c->out);
    }
    for (int r = 0; r < comm->world && NULL != comm->links; r++) {
        loco_link_free(&comm->links[r]);
    }
    free(comm->conns);
    free(comm->ctl);
    free(comm->out);
    free(comm->in);
    free(comm->links);
    free(comm->peer_state);
    free(comm->last_heard_ns);
    free(comm->done_seq);
    free(comm->done_digest);
    free(comm->peer_seq);
    comm->conns = NULL;
    comm->ctl = comm->out = comm->in = NULL;
    comm->links = NULL;
    comm->peer_state = NULL;
    comm->last_heard_ns = comm->done_seq = comm->done_digest = comm->peer_seq = NULL;
    comm->nconns = 0;
}

loco_status loco_comm_epoch_alloc(loco_comm_t comm)
{
    int K = comm->cfg.streams, N = comm->world;
    comm->nconns = N + 2 * K;
    comm->conns = calloc((size_t)comm->nconns, sizeof *comm->conns);
    comm->ctl = calloc((size_t)N, sizeof *comm->ctl);
    comm->out = calloc((size_t)K, sizeof *comm->out);
    comm->in = calloc((size_t)K, sizeof *comm->in);
    comm->links = calloc((size_t)N, sizeof *comm->links);
    comm->peer_state = calloc((size_t)N, sizeof *comm->peer_state);
    comm->last_heard_ns = calloc((size_t)N, sizeof *comm->last_heard_ns);
    comm->done_seq = calloc((size_t)N, sizeof *comm->done_seq);
    comm->done_digest = calloc((size_t)N * 2, sizeof *comm->done_digest);
    comm->peer_seq = calloc((size_t)N, sizeof *comm->peer_seq);
    if (NULL == comm->conns || NULL == comm->ctl || NULL == comm->out || NULL == comm->in ||
        NULL == comm->links || NULL == comm->peer_state || NULL == comm->last_heard_ns ||
        NULL == comm->done_seq || NULL == comm->done_digest || NULL == comm->peer_seq) {
        return LOCO_ERR_NOMEM;
    }
    for (int i = 0; i < comm->nconns; i++) {
        loco_conn *c = &comm->conns[i];
        c->fd = -1;
        c->peer = -1;
        if (i < N) {
            if (i == comm->rank) {
                continue;
            }
            c->peer = i;
            c->kind = LOCO_CONN_CONTROL;
            c->stream = K; /* the link's last stream */
            c->rx_cap = 8 + LOCO_REASON_MAX;
            c->rx_buf = malloc(c->rx_cap);
            if (NULL == c->rx_buf) {
                return LOCO_ERR_NOMEM;
            }
            comm->ctl[i] = c;
        } else if (N > 1) {
            int k = (i - N) % K;
            c->kind = LOCO_CONN_DATA;
            c->stream = k;
            c->outbound = i < N + K;
            c->peer = c->outbound ? comm->next : comm->prev;
            if (c->outbound) {
                comm->out[k] = c;
            } else {
                comm->in[k] = c;
            }
        }
    }
    uint64_t now = loco_now_ns();
    for (int r = 0; r < N; r++) {
        comm->last_heard_ns[r] = now;
        if (r == comm->rank) {
            continue;
        }
        LOCO_TRY(loco_link_init(&comm->links[r], loco_comm_link_for(comm, r), K + 1, now,
                                comm->cfg.link_seed,
                                loco_rng_stream_id((uint64_t)comm->members[comm->rank].id,
                                                   (uint64_t)comm->members[r].id, 0x4c494e4b)));
    }
    return LOCO_OK;
}

static loco_status comm_start_loop(loco_comm_t comm, loco_error *err)
{
    comm->epfd = epoll_create1(EPOLL_CLOEXEC);
    comm->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    comm->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (comm->epfd < 0 || comm->evfd < 0 || comm->tfd < 0) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "cannot create the event loop's descriptors");
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1ull << 40};
    epoll_ctl(comm->epfd, EPOLL_CTL_ADD, comm->evfd, &ev);
    ev.data.u64 = 2ull << 40;
    epoll_ctl(comm->epfd, EPOLL_CTL_ADD, comm->tfd, &ev);
    if (!comm->detached) {
        ev.data.u64 = 3ull << 40;
        epoll_ctl(comm->epfd, EPOLL_CTL_ADD, comm->listen_fd, &ev);
    }
    if (comm->ft) {
        loco_ftc_attach(comm);
    }
    loco_loop_register_conns(comm);
    uint64_t now = loco_now_ns();
    comm->start_ns = now;
    comm->next_ping_ns = now;
    for (int r = 0; r < comm->world; r++) {
        comm->last_heard_ns[r] = now;
    }
    if (0 != pthread_create(&comm->thread, NULL, loco_loop_main, comm)) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "cannot start the event-loop thread");
    }
    comm->thread_started = true;
    return LOCO_OK;
}

loco_status loco_comm_init(loco_comm_t *out, const loco_comm_config *config, loco_error *err)
{
    *out = NULL;
    LOCO_TRY(comm_check_config(config, err));
    loco_comm_t comm = calloc(1, sizeof *comm);
    if (NULL == comm) {
        return LOCO_ERR_NOMEM;
    }
    comm->cfg = *config;
    comm->listen_fd = comm->epfd = comm->evfd = comm->tfd = comm->coord_listen_fd = -1;
    comm->lost_rank = -1;
    for (int i = 0; i < LOCO_MAX_PENDING; i++) {
        comm->pending[i].fd = -1;
    }
    pthread_mutex_init(&comm->lock, NULL);
    pthread_cond_init(&comm->cond, NULL);
    for (int i = 0; i < LOCO_MAX_REQUESTS; i++) {
        comm->reqs[i].comm = comm;
    }
    loco_status st = LOCO_OK;
    if (config->n_link_rules > 0) {
        comm->rules = malloc((size_t)config->n_link_rules * sizeof *comm->rules);
        if (NULL == comm->rules) {
            st = LOCO_ERR_NOMEM;
        } else {
            memcpy(comm->rules, config->link_rules,
                   (size_t)config->n_link_rules * sizeof *comm->rules);
        }
    }
    comm->cfg.link_rules = comm->rules;
    loco_boot boot;
    if (LOCO_OK == st) {
        st = loco_bootstrap(config, &boot, err);
    }
    if (LOCO_OK == st) {
        comm->rank = boot.rank;
        comm->world = boot.world;
        comm->nonce = boot.nonce;
        comm->epoch = boot.epoch;
        comm->members = boot.members;
        comm->listen_fd = boot.listen_fd;
        comm->coord_listen_fd = boot.coord_fd;
        memcpy(comm->key, boot.key, sizeof comm->key);
        comm->ft = LOCO_COORD_NONE != config->ft.coordinator;
        comm->cfg.result_digest = comm->cfg.result_digest || comm->ft; /* verdicts need them */
        comm->admitted = LOCO_BOOTSTRAP_ADMIT != config->bootstrap;
        comm->detached = !comm->admitted;
        comm->detach_req = comm->detached;
        if (comm->admitted) {
            comm->my_id = comm->members[comm->rank].id;
            comm->next = (comm->rank + 1) % comm->world;
            comm->prev = (comm->rank + comm->world - 1) % comm->world;
            st = loco_comm_epoch_alloc(comm);
        }
    }
    if (LOCO_OK == st && comm->admitted) {
        st = loco_wire_connect(comm, err);
    }
    if (LOCO_OK == st && comm->ft) {
        st = loco_ftc_init(comm, err);
    }
    if (LOCO_OK == st) {
        st = comm_start_loop(comm, err);
    }
    if (LOCO_OK != st) {
        loco_error_set(err, st, "communicator init failed: %s", loco_status_str(st));
        loco_comm_free(comm);
        return st;
    }
    LOCO_DEBUG("rank %d of %d: connected (%d streams, nonce %016llx)", comm->rank, comm->world,
               comm->cfg.streams, (unsigned long long)comm->nonce);
    *out = comm;
    return LOCO_OK;
}

void loco_comm_free(loco_comm_t comm)
{
    if (NULL == comm) {
        return;
    }
    if (comm->thread_started) {
        pthread_mutex_lock(&comm->lock);
        for (int i = 0; i < LOCO_MAX_REQUESTS; i++) {
            LOCO_ASSERT(LOCO_REQ_QUEUED != comm->reqs[i].state &&
                        LOCO_REQ_RUNNING != comm->reqs[i].state);
        }
        comm->stop = true;
        pthread_mutex_unlock(&comm->lock);
        uint64_t one = 1;
        ssize_t ignored = write(comm->evfd, &one, sizeof one);
        (void)ignored;
        pthread_join(comm->thread, NULL);
    }
    loco_ftc_join_failover(comm);
    if (NULL != comm->coord) { /* let the others finish with it, unless this member left */
        if (comm->admitted) {
            loco_coord_wait(comm->coord, comm->cfg.peer_timeout_s + 1.0);
        }
        loco_coord_stop(comm->coord);
        comm->coord = NULL;
    }
    loco_ftc_free(comm);
    loco_comm_epoch_free(comm);
    for (int i = 0; i < LOCO_MAX_PENDING; i++) {
        if (comm->pending[i].fd >= 0) {
            close(comm->pending[i].fd);
        }
    }
    int fds[5] = {comm->listen_fd, comm->epfd, comm->evfd, comm->tfd, comm->coord_listen_fd};
    for (int i = 0; i < 5; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    pthread_mutex_destroy(&comm->lock);
    pthread_cond_destroy(&comm->cond);
    for (int i = 0; i < LOCO_MAX_REQUESTS; i++) {
        free(comm->reqs[i].vstore);
    }
    free(comm->members);
    free(comm->rules);
    free(comm->scratch);
    free(comm);
}

static void reset_fd(int fd)
{
    if (fd >= 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        shutdown(fd, SHUT_RDWR);
    }
}

void loco_comm_crash(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    comm->crashed = true;
    comm->stop = true;
    pthread_mutex_unlock(&comm->lock);
    if (comm->thread_started) {
        uint64_t one = 1;
        ssize_t ignored = write(comm->evfd, &one, sizeof one);
        (void)ignored;
        pthread_join(comm->thread, NULL);
        comm->thread_started = false;
    }
    loco_ftc_join_failover(comm);
    for (int i = 0; i < comm->nconns; i++) {
        reset_fd(comm->conns[i].fd);
    }
    if (NULL != comm->ftc) {
        reset_fd(comm->ftc->chan.fd);
    }
    reset_fd(comm->listen_fd);
    reset_fd(comm->coord_listen_fd);
    pthread_mutex_lock(&comm->lock);
    loco_coord *c = comm->coord;
    comm->coord = NULL;
    pthread_mutex_unlock(&comm->lock);
    loco_coord_stop(c); /* its members see the connections close */
}

int loco_comm_rank(loco_comm_t comm) { return comm->rank; }
int loco_comm_size(loco_comm_t comm) { return comm->world; }
uint32_t loco_comm_epoch(loco_comm_t comm) { return comm->epoch; }
uint64_t loco_comm_nonce(loco_comm_t comm) { return comm->nonce; }

bool loco_comm_broken(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    bool broken = comm->broken;
    pthread_mutex_unlock(&comm->lock);
    return broken;
}

const char *loco_comm_error(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    snprintf(comm->error_copy, sizeof comm->error_copy, "%s",
             comm->last_error[0] ? comm->last_error : comm->broken_msg);
    pthread_mutex_unlock(&comm->lock);
    return comm->error_copy;
}

void loco_comm_get_totals(loco_comm_t comm, loco_comm_totals *totals)
{
    pthread_mutex_lock(&comm->lock);
    *totals = comm->totals;
    pthread_mutex_unlock(&comm->lock);
    totals->bytes_sent = __atomic_load_n(&comm->io_sent, __ATOMIC_RELAXED);
    totals->bytes_received = __atomic_load_n(&comm->io_received, __ATOMIC_RELAXED);
}

/* ---- requests ------------------------------------------------------------------------------- */

static loco_status comm_refuse(loco_comm_t comm, loco_op_kind kind, loco_status st,
                               loco_op_info *info, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* An operation that cannot start: fill info and the communicator's last error. */
static loco_status comm_refuse(loco_comm_t comm, loco_op_kind kind, loco_status st,
                               loco_op_info *info, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (NULL != info) {
        memset(info, 0, sizeof *info);
        info->kind = kind;
        info->status = st;
        info->lost_rank = -1;
        loco_copy_str(info->error, sizeof info->error, msg);
    }
    if (NULL != comm) {
        pthread_mutex_lock(&comm->lock);
        loco_copy_str(comm->last_error, sizeof comm->last_error, msg);
        pthread_mutex_unlock(&comm->lock);
    }
    return st;
}

loco_status loco_comm_submit(loco_comm_t comm, const loco_op *op, loco_request_t *req_out,
                             loco_op_info *info)
{
    if (NULL != req_out) {
        *req_out = NULL;
    }
    pthread_mutex_lock(&comm->lock);
    if (!comm->admitted) {
        pthread_mutex_unlock(&comm->lock);
        return comm_refuse(comm, op->kind, LOCO_ERR_INVALID_ARG, info,
                           "this process is not a member of the group (a joiner is admitted by "
                           "its first loco_comm_sync_point; a member that left or was evicted "
                           "must rejoin)");
    }
    if (comm->broken) {
        char msg[256];
        loco_copy_str(msg, sizeof msg, comm->broken_msg);
        int lost = comm->lost_rank;
        comm->totals.ops++;
        comm->totals.ops_failed++;
        pthread_mutex_unlock(&comm->lock);
        loco_status st = comm_refuse(comm, op->kind, LOCO_ERR_PEER_LOST, info,
                                     "epoch %u is broken: %s", comm->epoch, msg);
        if (NULL != info) {
            info->lost_rank = lost;
            info->epoch = comm->epoch;
        }
        return st;
    }
    int slot = -1;
    for (int i = 0; i < LOCO_MAX_REQUESTS; i++) {
        if (LOCO_REQ_FREE == comm->reqs[i].state) {
            slot = i;
            break;
        }
    }
    if (slot < 0) {
        pthread_mutex_unlock(&comm->lock);
        return comm_refuse(comm, op->kind, LOCO_ERR_RANGE, info,
                           "more than %d operations outstanding: wait for some first",
                           LOCO_MAX_REQUESTS);
    }
    loco_request *req = &comm->reqs[slot];
    req->op = *op;
    loco_op *q = &req->op;
    if (NULL != op->counts) { /* keep recvcounts/displs for an asynchronous operation */
        if (NULL == req->vstore) {
            req->vstore = malloc(2 * (size_t)comm->world * sizeof *req->vstore);
            if (NULL == req->vstore) {
                pthread_mutex_unlock(&comm->lock);
                return comm_refuse(comm, op->kind, LOCO_ERR_NOMEM, info, "out of memory");
            }
        }
        memcpy(req->vstore, op->counts, (size_t)comm->world * sizeof *req->vstore);
        memcpy(req->vstore + comm->world, op->displs, (size_t)comm->world * sizeof *req->vstore);
        q->counts = req->vstore;
        q->displs = req->vstore + comm->world;
    }
    q->seq = ++comm->next_seq;
    q->submit_ns = loco_now_ns();
    memset(&q->info, 0, sizeof q->info);
    q->info.kind = q->kind;
    q->info.seq = q->seq;
    q->info.epoch = comm->epoch;
    q->info.world = comm->world;
    q->info.lost_rank = -1;
    loco_op_prepare(comm, q);
    req->state = LOCO_REQ_QUEUED;
    comm->queue[(comm->q_head + comm->q_count) % LOCO_MAX_REQUESTS] = slot;
    comm->q_count++;
    pthread_mutex_unlock(&comm->lock);
    uint64_t one = 1;
    ssize_t ignored = write(comm->evfd, &one, sizeof one);
    (void)ignored;
    if (NULL != req_out) {
        *req_out = req;
        return LOCO_OK;
    }
    loco_request_t r = req;
    return loco_wait(&r, info);
}

/* Release a finished request. */
static loco_status comm_release(loco_request *req, loco_op_info *info)
{
    loco_status st = req->op.info.status;
    if (NULL != info) {
        *info = req->op.info;
    }
    memset(&req->op, 0, sizeof req->op);
    req->state = LOCO_REQ_FREE;
    return st;
}

loco_status loco_wait(loco_request_t *preq, loco_op_info *info)
{
    if (NULL == preq || NULL == *preq) {
        return LOCO_ERR_INVALID_ARG;
    }
    loco_request *req = *preq;
    loco_comm_t comm = req->comm;
    pthread_mutex_lock(&comm->lock);
    while (LOCO_REQ_DONE != req->state) {
        pthread_cond_wait(&comm->cond, &comm->lock);
    }
    loco_status st = comm_release(req, info);
    pthread_mutex_unlock(&comm->lock);
    *preq = NULL;
    return st;
}

loco_status loco_test(loco_request_t *preq, bool *done, loco_op_info *info)
{
    *done = false;
    if (NULL == preq || NULL == *preq) {
        return LOCO_ERR_INVALID_ARG;
    }
    loco_request *req = *preq;
    loco_comm_t comm = req->comm;
    pthread_mutex_lock(&comm->lock);
    if (LOCO_REQ_DONE != req->state) {
        pthread_mutex_unlock(&comm->lock);
        return LOCO_OK;
    }
    loco_status st = comm_release(req, info);
    pthread_mutex_unlock(&comm->lock);
    *done = true;
    *preq = NULL;
    return st;
}

/* ---- collectives ---------------------------------------------------------------------------- */

static bool size_fits(size_t count, size_t esize) { return esize == 0 || count <= SIZE_MAX / esize; }

loco_status loco_comm_allreduce_op(loco_comm_t comm, const void *sendbuf, void *recvbuf,
                                   size_t count, loco_dtype dtype, loco_reduce_op reduce,
                                   const loco_codec *codec, uint32_t codec_id,
                                   const loco_codec_ctx *ctx, const loco_codec_hops *hops,
                                   loco_request_t *req, loco_op_info *info)
{
    if (NULL != req) {
        *req = NULL;
    }
    if (NULL == comm) {
        return comm_refuse(NULL, LOCO_OP_ALLREDUCE, LOCO_ERR_INVALID_ARG, info,
                           "allreduce: comm is NULL");
    }
    if (LOCO_DTYPE_F32 != dtype && LOCO_DTYPE_BF16 != dtype) {
        return comm_refuse(comm, LOCO_OP_ALLREDUCE, LOCO_ERR_INVALID_ARG, info,
                           "allreduce: dtype %d (f32 or bf16)", (int)dtype);
    }
    if (LOCO_REDUCE_SUM != reduce && LOCO_REDUCE_AVG != reduce) {
        return comm_refuse(comm, LOCO_OP_ALLREDUCE, LOCO_ERR_INVALID_ARG, info,
                           "allreduce: op %d (sum or avg)", (int)reduce);
    }
    if (count > 0 && (NULL == sendbuf || NULL == recvbuf || !size_fits(count, 4) ||
                      count * 4 / comm->cfg.chunk_bytes >= (1u << 31))) {
        return comm_refuse(comm, LOCO_OP_ALLREDUCE, LOCO_ERR_INVALID_ARG, info,
                           "allreduce: NULL buffer or count %zu too large", count);
    }
    loco_op op = {.kind = LOCO_OP_ALLREDUCE, .sendbuf = sendbuf, .recvbuf = recvbuf,
                  .count = count, .dtype = dtype, .reduce = reduce, .root = -1,
                  .codec = codec, .codec_id = codec_id, .hops = hops};
    if (NULL != ctx) {
        op.ctx = *ctx;
    } else {
        op.ctx.step = comm->next_seq + 1;
    }
    return loco_comm_submit(comm, &op, req, info);
}

loco_status loco_allreduce(loco_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                           loco_dtype dtype, loco_reduce_op op, loco_op_info *info)
{
    return loco_comm_allreduce_op(comm, sendbuf, recvbuf, count, dtype, op, NULL, 0, NULL, NULL,
                                  NULL, info);
}

loco_status loco_iallreduce(loco_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                            loco_dtype dtype, loco_reduce_op op, loco_request_t *req)
{
    if (NULL == req) {
        return LOCO_ERR_INVALID_ARG;
    }
    return loco_comm_allreduce_op(comm, sendbuf, recvbuf, count, dtype, op, NULL, 0, NULL, NULL,
                                  req, NULL);
}

static loco_status comm_allgatherv(loco_comm_t comm, const void *sendbuf, size_t sendcount,
                                   void *recvbuf, const size_t *recvcounts, const size_t *displs,
                                   loco_dtype dtype, loco_op_kind kind, loco_request_t *req,
                                   loco_op_info *info)
{
    if (NULL != req) {
        *req = NULL;
    }
    if (NULL == comm) {
        return comm_refuse(NULL, kind, LOCO_ERR_INVALID_ARG, info, "allgatherv: comm is NULL");
    }
    size_t esize = loco_dtype_size(dtype);
    if (0 == esize || NULL == recvcounts || NULL == displs) {
        return comm_refuse(comm, kind, LOCO_ERR_INVALID_ARG, info,
                           "allgatherv: bad dtype %d or NULL recvcounts/displs", (int)dtype);
    }
    if (sendcount != recvcounts[comm->rank]) {
        return comm_refuse(comm, kind, LOCO_ERR_INVALID_ARG, info,
                           "allgatherv: sendcount %zu but recvcounts[%d] = %zu", sendcount,
                           comm->rank, recvcounts[comm->rank]);
    }
    size_t total = 0;
    for (int r = 0; r < comm->world; r++) {
        if (!size_fits(displs[r] + recvcounts[r], esize) || displs[r] + recvcounts[r] < displs[r]) {
            return comm_refuse(comm, kind, LOCO_ERR_INVALID_ARG, info,
                               "allgatherv: block %d (displ %zu, count %zu) overflows", r,
                               displs[r], recvcounts[r]);
        }
        total += recvcounts[r];
    }
    if (total > 0 && NULL == recvbuf) {
        return comm_refuse(comm, kind, LOCO_ERR_INVALID_ARG, info, "allgatherv: recvbuf is NULL");
    }
    if (sendcount > 0 && NULL == sendbuf) {
        return comm_refuse(comm, kind, LOCO_ERR_INVALID_ARG, info, "allgatherv: sendbuf is NULL");
    }
    loco_op op = {.kind = kind, .sendbuf = sendbuf, .recvbuf = recvbuf, .dtype = dtype,
                  .root = -1, .counts = (size_t *)recvcounts, .displs = (size_t *)displs};
    return loco_comm_submit(comm, &op, req, info);
}

loco_status loco_allgatherv(loco_comm_t comm, const void *sendbuf, size_t sendcount,
                            void *recvbuf, const size_t *recvcounts, const size_t *displs,
                            loco_dtype dtype, loco_op_info *info)
{
    return comm_allgatherv(comm, sendbuf, sendcount, recvbuf, recvcounts, displs, dtype,
                           LOCO_OP_ALLGATHERV, NULL, info);
}

loco_status loco_iallgatherv(loco_comm_t comm, const void *sendbuf, size_t sendcount,
                             void *recvbuf, const size_t *recvcounts, const size_t *displs,
                             loco_dtype dtype, loco_request_t *req)
{
    if (NULL == req) {
        return LOCO_ERR_INVALID_ARG;
    }
    return comm_allgatherv(comm, sendbuf, sendcount, recvbuf, recvcounts, displs, dtype,
                           LOCO_OP_ALLGATHERV, req, NULL);
}

loco_status loco_allgather(loco_comm_t comm, const void *sendbuf, size_t count, void *recvbuf,
                           loco_dtype dtype, loco_op_info *info)
{
    if (NULL == comm) {
        return comm_refuse(NULL, LOCO_OP_ALLGATHERV, LOCO_ERR_INVALID_ARG, info,
                           "allgather: comm is NULL");
    }
    size_t *v = malloc(2 * (size_t)comm->world * sizeof *v);
    if (NULL == v) {
        return LOCO_ERR_NOMEM;
    }
    for (int r = 0; r < comm->world; r++) {
        v[r] = count;
        v[comm->world + r] = (size_t)r * count;
    }
    loco_status st = loco_allgatherv(comm, sendbuf, count, recvbuf, v, v + comm->world, dtype,
                                     info);
    free(v);
    return st;
}

static loco_status comm_broadcast(loco_comm_t comm, void *buf, size_t count, loco_dtype dtype,
                                  int root, loco_request_t *req, loco_op_info *info)
{
    if (NULL != req) {
        *req = NULL;
    }
    if (NULL == comm) {
        return comm_refuse(NULL, LOCO_OP_BROADCAST, LOCO_ERR_INVALID_ARG, info,
                           "broadcast: comm is NULL");
    }
    size_t esize = loco_dtype_size(dtype);
    if (0 == esize || root < 0 || root >= comm->world || !size_fits(count, esize) ||
        (count > 0 && NULL == buf)) {
        return comm_refuse(comm, LOCO_OP_BROADCAST, LOCO_ERR_INVALID_ARG, info,
                           "broadcast: root %d of %d, dtype %d, count %zu, buf %p", root,
                           comm->world, (int)dtype, count, buf);
    }
    loco_op op = {.kind = LOCO_OP_BROADCAST, .sendbuf = buf, .recvbuf = buf, .count = count,
                  .dtype = dtype, .root = root};
    return loco_comm_submit(comm, &op, req, info);
}

loco_status loco_broadcast(loco_comm_t comm, void *buf, size_t count, loco_dtype dtype, int root,
                           loco_op_info *info)
{
    return comm_broadcast(comm, buf, count, dtype, root, NULL, info);
}

loco_status loco_ibroadcast(loco_comm_t comm, void *buf, size_t count, loco_dtype dtype, int root,
                            loco_request_t *req)
{
    if (NULL == req) {
        return LOCO_ERR_INVALID_ARG;
    }
    return comm_broadcast(comm, buf, count, dtype, root, req, NULL);
}

static loco_status comm_barrier(loco_comm_t comm, loco_request_t *req, loco_op_info *info)
{
    if (NULL != req) {
        *req = NULL;
    }
    if (NULL == comm) {
        return comm_refuse(NULL, LOCO_OP_BARRIER, LOCO_ERR_INVALID_ARG, info,
                           "barrier: comm is NULL");
    }
    loco_op op = {.kind = LOCO_OP_BARRIER, .dtype = LOCO_DTYPE_BYTE, .root = -1};
    return loco_comm_submit(comm, &op, req, info);
}

loco_status loco_barrier(loco_comm_t comm, loco_op_info *info)
{
    return comm_barrier(comm, NULL, info);
}

loco_status loco_ibarrier(loco_comm_t comm, loco_request_t *req)
{
    if (NULL == req) {
        return LOCO_ERR_INVALID_ARG;
    }
    return comm_barrier(comm, req, NULL);
}
