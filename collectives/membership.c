/* collectives/membership.c — recover and sync points on the caller's thread
 * (collectives/membership.h): send the request, wait for the coordinator's plan, execute it
 * (re-wire into the next epoch, move state), report, wait for the round's commit.
 *
 * One routine serves both: a recovery is a reconfiguration without state. A plan that arrives
 * while an older one is being executed supersedes it (a member failed meanwhile): wiring and
 * transfers stop and the new plan is executed from the start. A plan that does not list this
 * member means it left (when it asked to) or was removed.
 */
#include "collectives/ft_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers -------------------------------------------------------------------------------- */

static bool ms_idle(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    bool idle = NULL == comm->cur && 0 == comm->q_count;
    for (int i = 0; i < LOCO_MAX_REQUESTS && idle; i++) {
        idle = LOCO_REQ_QUEUED != comm->reqs[i].state && LOCO_REQ_RUNNING != comm->reqs[i].state;
    }
    pthread_mutex_unlock(&comm->lock);
    return idle;
}

static bool plan_has(const loco_plan *p, uint32_t id, int *rank)
{
    for (int r = 0; r < p->n; r++) {
        if (p->members[r].id == id) {
            *rank = r;
            return true;
        }
    }
    return false;
}

static void cond_wait_until(loco_comm_t comm, uint64_t deadline_ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = loco_now_ns();
    uint64_t wait = deadline_ns > now ? deadline_ns - now : 0;
    wait = wait < 100000000ull ? wait : 100000000ull;
    ts.tv_nsec += (long)wait;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&comm->cond, &comm->lock, &ts);
}

/* Wait for a plan newer than *gen; decode it. */
static loco_status ms_wait_plan(loco_comm_t comm, uint64_t *gen, uint64_t deadline_ns,
                                loco_plan *plan, loco_error *err)
{
    loco_ftc *f = comm->ftc;
    pthread_mutex_lock(&comm->lock);
    while (f->plan_gen == *gen && '\0' == f->fatal[0] && !f->evicted &&
           loco_now_ns() < deadline_ns) {
        cond_wait_until(comm, deadline_ns);
    }
    if ('\0' != f->fatal[0]) {
        loco_status st = loco_error_set(err, LOCO_ERR_PEER_LOST, "%s", f->fatal);
        pthread_mutex_unlock(&comm->lock);
        return st;
    }
    if (f->plan_gen == *gen && !f->evicted) {
        pthread_mutex_unlock(&comm->lock);
        return loco_error_set(err, LOCO_ERR_TIMEOUT,
                              "no plan from the coordinator within the deadline (ft.sync_timeout "
                              "/ ft.join_timeout)");
    }
    *gen = f->plan_gen;
    f->exec_gen = f->plan_gen;
    uint32_t epoch = f->plan_epoch, len = f->plan_len;
    uint8_t *copy = malloc(len + 1);
    if (NULL != copy && len > 0) {
        memcpy(copy, f->plan, len);
    }
    pthread_mutex_unlock(&comm->lock);
    if (NULL == copy) {
        return LOCO_ERR_NOMEM;
    }
    loco_status st = loco_plan_decode(copy, len, epoch, plan, err);
    free(copy);
    return st;
}

/* Wait for the commit of `round` (true) or a newer plan (false). */
static loco_status ms_wait_commit(loco_comm_t comm, uint32_t round, uint64_t commit_seen,
                                  uint64_t deadline_ns, bool *committed, loco_error *err)
{
    loco_ftc *f = comm->ftc;
    *committed = false;
    pthread_mutex_lock(&comm->lock);
    for (;;) {
        if (f->commit_gen != commit_seen && f->commit_round == round) {
            *committed = true;
            break;
        }
        if (f->plan_gen != f->exec_gen || f->evicted || '\0' != f->fatal[0]) {
            break; /* superseded: the caller looks at the newer plan */
        }
        if (loco_now_ns() >= deadline_ns) {
            pthread_mutex_unlock(&comm->lock);
            return loco_error_set(err, LOCO_ERR_TIMEOUT, "round %u was not completed in time",
                                  round);
        }
        cond_wait_until(comm, deadline_ns);
    }
    pthread_mutex_unlock(&comm->lock);
    return LOCO_OK;
}

/* Re-wire into the plan's epoch: detach the loop, rebuild the per-epoch arrays, connect,
 * attach. On failure the epoch stays broken and the loop detached. */
static loco_status ms_rewire(loco_comm_t comm, const loco_plan *p, int rank, loco_error *err)
{
    loco_loop_detach(comm);
    loco_member *members = malloc((size_t)p->n * sizeof *members);
    if (NULL == members) {
        return LOCO_ERR_NOMEM;
    }
    memcpy(members, p->members, (size_t)p->n * sizeof *members);
    pthread_mutex_lock(&comm->lock);
    loco_comm_epoch_free(comm);
    free(comm->members);
    comm->members = members;
    comm->world = p->n;
    comm->rank = rank;
    comm->epoch = p->epoch;
    comm->next = (rank + 1) % p->n;
    comm->prev = (rank + p->n - 1) % p->n;
    comm->next_seq = 0;
    comm->seq_done = 0;
    comm->broken = false;
    comm->lost_rank = -1;
    comm->broken_msg[0] = '\0';
    comm->last_error[0] = '\0';
    comm->admitted = true;
    comm->ftc->done_seq = 0; /* operation numbers start again in each epoch */
    comm->ftc->done_verdict = LOCO_VERDICT_NONE;
    loco_status st = loco_comm_epoch_alloc(comm);
    pthread_mutex_unlock(&comm->lock);
    if (LOCO_OK == st) {
        st = loco_wire_connect(comm, err);
    }
    if (LOCO_OK != st) {
        pthread_mutex_lock(&comm->lock);
        for (int i = 0; i < comm->nconns; i++) { /* nothing half-made survives */
            loco_conn_stop(comm, &comm->conns[i], true);
        }
        comm->broken = true;
        snprintf(comm->broken_msg, sizeof comm->broken_msg, "epoch %u could not be connected",
                 comm->epoch);
        pthread_mutex_unlock(&comm->lock);
        return st;
    }
    loco_loop_attach(comm);
    return LOCO_OK;
}

/* This member is out (left or removed): nothing may run here any more. */
static void ms_out(loco_comm_t comm)
{
    loco_loop_detach(comm);
    pthread_mutex_lock(&comm->lock);
    comm->admitted = false;
    comm->broken = true;
    snprintf(comm->broken_msg, sizeof comm->broken_msg, "this member is not in the group");
    pthread_mutex_unlock(&comm->lock);
}

/* ---- the reconfiguration -------------------------------------------------------------------- */

typedef struct ms_request {
    loco_msg_reconf msg;
    const loco_state_buffer *state;
    int nstate;
    bool leave;
} ms_request;

static void ms_finish_report(loco_comm_t comm, const loco_plan *p, bool was_admitted,
                             bool received, loco_reconf_report *r)
{
    r->epoch = comm->epoch;
    r->rank = comm->rank;
    r->world = comm->world;
    r->step = p->step;
    r->joined = !was_admitted && comm->admitted;
    r->repaired = was_admitted && received;
    r->n_joined = p->n_joined;
    r->n_left = p->n_left;
    r->n_removed = p->n_removed;
    r->n_repaired = p->n_repaired;
    r->counts = p->counts;
    snprintf(r->note, sizeof r->note, "%s", p->note);
}

static loco_status ms_reconfigure(loco_comm_t comm, ms_request *req, loco_reconf_report *rep,
                                  loco_error *err)
{
    loco_ftc *f = comm->ftc;
    uint64_t t0 = loco_now_ns();
    bool was_admitted = comm->admitted;
    uint32_t epoch_before = comm->epoch;
    double limit = was_admitted ? comm->cfg.ft.sync_timeout_s : comm->cfg.ft.join_timeout_s;
    uint64_t deadline = t0 + (uint64_t)(limit * 1e9);
    memset(rep, 0, sizeof *rep);
    rep->epoch_before = epoch_before;
    rep->member_id = comm->my_id;
    size_t cap = 64 + (size_t)req->msg.nbuf * (24 + LOCO_STATE_NAME_MAX);
    uint8_t *payload = malloc(cap);
    size_t len = NULL == payload ? 0 : loco_msg_reconf_encode(&req->msg, payload, cap);
    if (0 == len) {
        free(payload);
        return LOCO_ERR_NOMEM;
    }
    pthread_mutex_lock(&comm->lock);
    uint64_t gen = f->plan_gen;
    bool evicted = f->evicted;
    pthread_mutex_unlock(&comm->lock);
    loco_status st = LOCO_OK;
    if (!evicted) {
        st = loco_ftc_post(comm, LOCO_FRAME_RECONF, comm->epoch, 0, payload, (uint32_t)len, true);
    }
    free(payload);
    loco_xfer_stats xs = {0};
    loco_plan plan = {0};
    bool received = false;
    while (LOCO_OK == st) {
        loco_plan_free(&plan);
        st = ms_wait_plan(comm, &gen, deadline, &plan, err);
        if (LOCO_OK != st) {
            break;
        }
        pthread_mutex_lock(&comm->lock);
        evicted = f->evicted;
        uint64_t commit_seen = f->commit_gen;
        pthread_mutex_unlock(&comm->lock);
        int rank = -1;
        if (evicted || !plan_has(&plan, comm->my_id, &rank)) {
            bool left = req->leave && !evicted && 0 == (plan.flags & LOCO_PLAN_ERROR);
            ms_out(comm);
            rep->left = left;
            rep->evicted = !left;
            rep->counts = plan.counts;
            if (left) {
                st = loco_error_set(err, LOCO_ERR_STOPPED, "member %u left the group at step %llu",
                                    comm->my_id, (unsigned long long)plan.step);
            } else {
                pthread_mutex_lock(&comm->lock);
                snprintf(rep->note, sizeof rep->note, "%s",
                         evicted ? f->evicted_note : plan.note);
                pthread_mutex_unlock(&comm->lock);
                st = loco_error_set(err, LOCO_ERR_ABORTED, "member %u is no longer in the group: "
                                                           "%s", comm->my_id, rep->note);
            }
            break;
        }
        rep->rounds++;
        bool new_epoch = (plan.flags & LOCO_PLAN_NEW_EPOCH) || !comm->admitted ||
                         plan.epoch != comm->epoch;
        if (!new_epoch && 0 == plan.n_recv) { /* nothing to do: the round is complete */
            ms_finish_report(comm, &plan, was_admitted, received, rep);
            break;
        }
        loco_error e = {0};
        loco_status rs = LOCO_OK;
        if (new_epoch) {
            rs = ms_rewire(comm, &plan, rank, &e);
        }
        if (LOCO_OK == rs && LOCO_RECONF_SYNC == req->msg.kind) {
            loco_xfer_stats before = xs;
            rs = loco_xfer_run(comm, &plan, req->state, req->nstate, gen, &xs, &e);
            received = received || xs.bytes_received > before.bytes_received;
        }
        if (loco_ftc_superseded(comm)) {
            continue; /* a newer plan: execute that one */
        }
        uint8_t done[16 + LOCO_REASON_MAX];
        size_t dl = loco_msg_round_encode(plan.round, rs, LOCO_OK == rs ? "" : e.msg, done);
        loco_ftc_post(comm, LOCO_FRAME_PLAN_DONE, comm->epoch, 0, done, (uint32_t)dl, false);
        if (LOCO_OK != rs) {
            LOCO_WARN("member %u: round %u failed here: %s", comm->my_id, plan.round, e.msg);
        }
        bool committed = false;
        st = ms_wait_commit(comm, plan.round, commit_seen, deadline, &committed, err);
        if (LOCO_OK == st && committed) {
            ms_finish_report(comm, &plan, was_admitted, received, rep);
            break;
        }
    }
    loco_ftc_end_request(comm);
    rep->state_bytes_received = xs.bytes_received;
    rep->state_bytes_sent = xs.bytes_sent;
    rep->transfer_seconds = xs.seconds;
    rep->seconds = (double)(loco_now_ns() - t0) * 1e-9;
    pthread_mutex_lock(&comm->lock);
    loco_ft_totals *t = &f->totals;
    t->state_bytes_sent += xs.bytes_sent;
    t->state_bytes_received += xs.bytes_received;
    t->counts = rep->counts.started ? rep->counts : t->counts;
    if (LOCO_OK == st) {
        t->epochs += comm->epoch != epoch_before;
        t->repairs += rep->repaired;
        f->step = plan.step;
        f->counts = plan.counts;
    }
    pthread_mutex_unlock(&comm->lock);
    if (LOCO_OK == st && (rep->n_joined || rep->n_left || rep->n_repaired || rep->joined)) {
        LOCO_INFO("member %u: epoch %u, %d members (%s)", comm->my_id, comm->epoch, comm->world,
                  rep->note);
    }
    loco_plan_free(&plan);
    return st;
}

/* ---- public API ----------------------------------------------------------------------------- */

static loco_status ms_check(loco_comm_t comm, loco_error *err)
{
    if (NULL == comm || !comm->ft) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "this communicator has no control plane (ft.coordinator: none)");
    }
    if (!ms_idle(comm)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "operations are still outstanding: wait for them first");
    }
    return LOCO_OK;
}

static void ms_record_error(loco_comm_t comm, loco_status st, const loco_error *e)
{
    if (LOCO_OK != st && NULL != comm) {
        pthread_mutex_lock(&comm->lock);
        loco_copy_str(comm->last_error, sizeof comm->last_error, loco_error_msg(e, st));
        pthread_mutex_unlock(&comm->lock);
    }
}

loco_status loco_comm_recover(loco_comm_t comm, loco_reconf_report *report)
{
    loco_reconf_report local;
    loco_reconf_report *rep = NULL != report ? report : &local;
    memset(rep, 0, sizeof *rep);
    loco_error e = {0};
    loco_status st = ms_check(comm, &e);
    if (LOCO_OK == st && !comm->admitted) {
        rep->evicted = true;
        st = loco_error_set(&e, LOCO_ERR_ABORTED, "member %u is not in the group",
                            comm->my_id);
    }
    if (LOCO_OK == st) {
        ms_request req = {.msg = {.kind = LOCO_RECONF_RECOVER,
                                  .flags = loco_comm_broken(comm) ? LOCO_RECONF_BROKEN : 0}};
        st = ms_reconfigure(comm, &req, rep, &e);
        pthread_mutex_lock(&comm->lock);
        comm->ftc->totals.recover_seconds += rep->seconds;
        comm->ftc->totals.recoveries += LOCO_OK == st;
        pthread_mutex_unlock(&comm->lock);
    }
    ms_record_error(comm, st, &e);
    return st;
}

loco_status loco_comm_sync_point(loco_comm_t comm, uint64_t step, const loco_state_buffer *state,
                                 int nstate, const loco_sync_options *opt,
                                 loco_reconf_report *report)
{
    loco_reconf_report local;
    loco_reconf_report *rep = NULL != report ? report : &local;
    memset(rep, 0, sizeof *rep);
    loco_error e = {0};
    loco_status st = ms_check(comm, &e);
    if (LOCO_OK == st && (nstate < 0 || nstate > LOCO_STATE_MAX_BUFFERS ||
                          (nstate > 0 && NULL == state))) {
        st = loco_error_set(&e, LOCO_ERR_INVALID_ARG, "sync point: %d state buffers (0..%d)",
                            nstate, LOCO_STATE_MAX_BUFFERS);
    }
    for (int b = 0; b < nstate && LOCO_OK == st; b++) {
        const char *name = state[b].name;
        if (NULL == name || '\0' == name[0] || strlen(name) > LOCO_STATE_NAME_MAX ||
            (state[b].bytes > 0 && NULL == state[b].ptr)) {
            st = loco_error_set(&e, LOCO_ERR_INVALID_ARG,
                                "sync point: state buffer %d needs a name of 1..%d characters "
                                "and memory for its %zu bytes",
                                b, LOCO_STATE_NAME_MAX, state[b].bytes);
        }
        for (int k = 0; k < b && LOCO_OK == st; k++) {
            if (0 == strcmp(state[k].name, name)) {
                st = loco_error_set(&e, LOCO_ERR_INVALID_ARG,
                                    "sync point: state buffer name '%s' appears twice", name);
            }
        }
    }
    if (LOCO_OK == st && !comm->admitted && LOCO_BOOTSTRAP_ADMIT != comm->cfg.bootstrap) {
        rep->evicted = true;
        st = loco_error_set(&e, LOCO_ERR_ABORTED, "member %u is not in the group",
                            comm->my_id);
    }
    loco_state_desc *descs = NULL;
    if (LOCO_OK == st) {
        descs = calloc((size_t)nstate + 1, sizeof *descs);
        uint64_t *digests = calloc((size_t)nstate + 1, sizeof *digests);
        if (NULL == descs || NULL == digests) {
            st = LOCO_ERR_NOMEM;
        } else if (comm->admitted) {
            loco_state_digests(state, nstate, digests);
        }
        for (int b = 0; b < nstate && NULL != descs; b++) {
            descs[b].bytes = state[b].bytes;
            descs[b].digest = NULL != digests ? digests[b] : 0;
            loco_copy_str(descs[b].name, sizeof descs[b].name, state[b].name);
        }
        free(digests);
    }
    if (LOCO_OK == st) {
        pthread_mutex_lock(&comm->lock);
        bool leave = (NULL != opt && opt->leave) || comm->ftc->leave_requested;
        comm->ftc->leave_requested = leave; /* a plan without this member then means "left" */
        pthread_mutex_unlock(&comm->lock);
        uint32_t flags = (leave ? LOCO_RECONF_LEAVE : 0) |
                         (comm->admitted ? 0 : LOCO_RECONF_JOINER) |
                         (comm->admitted && loco_comm_broken(comm) ? LOCO_RECONF_BROKEN : 0);
        ms_request req = {.msg = {.kind = LOCO_RECONF_SYNC, .flags = flags, .step = step,
                                  .nbuf = nstate, .bufs = descs},
                          .state = state, .nstate = nstate, .leave = leave};
        st = ms_reconfigure(comm, &req, rep, &e);
        pthread_mutex_lock(&comm->lock);
        comm->ftc->totals.sync_points += LOCO_OK == st;
        pthread_mutex_unlock(&comm->lock);
    }
    free(descs);
    ms_record_error(comm, st, &e);
    return st;
}

void loco_comm_request_leave(loco_comm_t comm)
{
    if (NULL != comm && NULL != comm->ftc) {
        __atomic_store_n(&comm->ftc->leave_requested, true, __ATOMIC_RELAXED);
    }
}

bool loco_comm_admitted(loco_comm_t comm)
{
    pthread_mutex_lock(&comm->lock);
    bool a = comm->admitted;
    pthread_mutex_unlock(&comm->lock);
    return a;
}

uint32_t loco_comm_member_id(loco_comm_t comm) { return comm->my_id; }

void loco_comm_join_address(loco_comm_t comm, char *out, size_t cap)
{
    pthread_mutex_lock(&comm->lock);
    if (comm->admitted && comm->rank >= 0) {
        const loco_member *m = &comm->members[comm->rank];
        snprintf(out, cap, "%s:%u", m->host, m->port);
    } else if (cap > 0) {
        out[0] = '\0';
    }
    pthread_mutex_unlock(&comm->lock);
}

void loco_comm_get_ft_totals(loco_comm_t comm, loco_ft_totals *totals)
{
    memset(totals, 0, sizeof *totals);
    if (NULL == comm || NULL == comm->ftc) {
        return;
    }
    pthread_mutex_lock(&comm->lock);
    *totals = comm->ftc->totals;
    totals->counts = comm->ftc->counts;
    totals->coordinator_here = NULL != comm->coord;
    pthread_mutex_unlock(&comm->lock);
}

loco_status loco_allreduce_ft(loco_comm_t comm, const void *sendbuf, void *recvbuf, size_t count,
                              loco_dtype dtype, loco_reduce_op op, int max_retries,
                              loco_op_info *info)
{
    loco_op_info local;
    loco_op_info *out = NULL != info ? info : &local;
    int retries = 0;
    for (;;) {
        loco_status st = loco_allreduce(comm, sendbuf, recvbuf, count, dtype, op, out);
        out->retries = (uint32_t)retries;
        if (LOCO_ERR_PEER_LOST != st || retries >= max_retries) {
            return st;
        }
        loco_status rs = loco_comm_recover(comm, NULL);
        if (LOCO_OK != rs) {
            return rs;
        }
        retries++;
        pthread_mutex_lock(&comm->lock);
        comm->ftc->totals.retries++;
        pthread_mutex_unlock(&comm->lock);
    }
}
