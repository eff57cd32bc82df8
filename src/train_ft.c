/* src/train_ft.c — `loco train` on the control plane (collectives/membership.h, DESIGN.md §6):
 * recovering from a lost worker, sync points (joins, leaves, state parity), SIGTERM, and the
 * fault injection the churn tests use.
 *
 * Lost workers. Every call that communicates is repeated through train_repeat_after_loss: on
 * LOCO_ERR_PEER_LOST the strategy gives up what is in flight (loco_sync_quiesce), the survivors
 * form the next epoch (loco_comm_recover), the strategy, the data and the metrics follow the new
 * rank and world, and the caller repeats its call (optim/sync.h, Failures). A worker the group
 * left out (it was too late, e.g. stopped) gets LOCO_ERR_ABORTED and ends as "evicted".
 *
 * Sync points. At step boundaries where nothing is in flight and every replica holds what a
 * newcomer needs, every member calls loco_comm_sync_point with the shared state:
 *   train.step, data.sequences            the step and the data position (sequences per worker)
 *   model.params                          ddp, demo: the replicas are the shared state
 *   optim.* (ddp)                         the inner optimizer's moments and step: identical on
 *                                         every ddp replica (diloco/streaming keep theirs local,
 *                                         a joiner starts its own fresh)
 *   the strategy's shared buffers         theta_global, outer momentum, schedule, pending average
 * (no RNG: every random draw is keyed by (run.seed, step, member, tensor), so the step is all
 * of it). Where: ddp and demo every train.sync_every steps; diloco at the start of each round
 * (with delay 1: before the round's last step, when the delayed average has landed, so the
 * overlap is kept); streaming every H steps (after a fragment landed, none in flight); and once
 * more on every member after the last step. A joiner's first sync point admits it: it receives
 * all of the above, restarts its replica from theta_global (diloco, streaming) and trains on
 * from the group's step. A member that asked to leave (SIGTERM, train.leave_at_step) leaves
 * there without aborting anyone's operation.
 *
 * SIGTERM. It is blocked in every thread; one watcher thread waits for it and calls
 * loco_comm_request_leave (async-safe), so no signal handler and no global state are needed.
 * The same thread carries out train.kill_at_step: armed at a step boundary, it SIGKILLs this
 * process once train.kill_after_bytes have gone out since — in the middle of a collective —
 * after noting the moment in run.dir/member.ID.fault.json (for the kill-to-resume figure).
 */
#include "src/train_impl.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TRAIN_MAX_REPEATS 64 /* recoveries without a completed step before giving up */

struct train_watcher {
    pthread_t thread;
    loco_comm_t comm;
    char fault_path[LOCO_PATH_MAX + 64];
    uint64_t kill_after_bytes;
    uint32_t member_id;
    int stop;           /* atomic: end the thread */
    int term;           /* atomic: SIGTERM arrived */
    int armed;          /* atomic: the fault fires once enough bytes went out */
    uint64_t armed_bytes; /* bytes sent when armed (written before armed is set) */
    int64_t armed_step;
};

/* ---------------------------------------------------------------------------------------------
 * The watcher thread */

void train_block_sigterm(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void fault_fire(struct train_watcher *t, uint64_t sent)
{
    FILE *fp = fopen(t->fault_path, "w"); /* no fsync: the kill must land mid-collective */
    if (NULL != fp) {
        fprintf(fp, "{\"member\": %u, \"step\": %lld, \"wall\": %.6f, \"bytes_since_armed\": %llu}\n",
                t->member_id, (long long)t->armed_step, loco_wall_s(),
                (unsigned long long)(sent - t->armed_bytes));
        fclose(fp);
    }
    kill(getpid(), SIGKILL);
}

static void *watcher_main(void *arg)
{
    struct train_watcher *t = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
        bool armed = __atomic_load_n(&t->armed, __ATOMIC_ACQUIRE);
        struct timespec wait = {0, armed ? 100000L : 50000000L}; /* 0.1 ms armed, else 50 ms */
        if (SIGTERM == sigtimedwait(&set, NULL, &wait)) {
            __atomic_store_n(&t->term, 1, __ATOMIC_RELEASE);
            loco_comm_request_leave(t->comm);
            LOCO_WARN("SIGTERM: member %u leaves the group at its next sync point", t->member_id);
        }
        if (armed) {
            loco_comm_totals tot;
            loco_comm_get_totals(t->comm, &tot);
            if (tot.bytes_sent - t->armed_bytes >= t->kill_after_bytes) {
                fault_fire(t, tot.bytes_sent);
            }
        }
    }
    return NULL;
}

/* Is `id` in the comma-separated list (an empty list names everyone)? */
static loco_status member_listed(const char *list, uint32_t id, bool *listed, loco_error *err)
{
    *listed = '\0' == list[0];
    for (const char *p = list; '\0' != *p;) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || (',' != *end && '\0' != *end)) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "train.fault_members = '%s': allowed: member ids separated by "
                                  "commas (e.g. \"1,3\"), or \"\" for every worker",
                                  list);
        }
        *listed = *listed || (uint32_t)v == id;
        p = ',' == *end ? end + 1 : end;
    }
    return LOCO_OK;
}

loco_status train_ft_begin(worker *w, loco_error *err)
{
    if (NULL == w->comm) {
        return LOCO_OK;
    }
    w->ft = LOCO_COORD_NONE != w->cfg.transport.comm.ft.coordinator;
    w->member_id = loco_comm_member_id(w->comm);
    w->last_sync_step = -1;
    w->next_sync_step = LOCO_SYNC_DILOCO == w->cfg.sync.strategy && 0 != w->cfg.sync.delay
                            ? w->cfg.sync.h - 1
                            : -1;
    LOCO_TRY(member_listed(w->cfg.train.fault_members, w->member_id, &w->fault_target, err));
    struct train_watcher *t = calloc(1, sizeof *t);
    if (NULL == t) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
    }
    t->comm = w->comm;
    t->member_id = w->member_id;
    t->kill_after_bytes = (uint64_t)w->cfg.train.kill_after_bytes;
    snprintf(t->fault_path, sizeof t->fault_path, "%s/member.%u.fault.json", w->cfg.run.dir,
             w->member_id);
    int rc = pthread_create(&t->thread, NULL, watcher_main, t);
    if (0 != rc) {
        free(t);
        return loco_error_set(err, LOCO_ERR_SYSTEM, "cannot start the SIGTERM watcher: %s",
                              strerror(rc));
    }
    w->watcher = t;
    return LOCO_OK;
}

void train_ft_end(worker *w)
{
    if (NULL == w->watcher) {
        return;
    }
    __atomic_store_n(&w->watcher->stop, 1, __ATOMIC_RELEASE);
    pthread_join(w->watcher->thread, NULL);
    free(w->watcher);
    w->watcher = NULL;
}

static bool term_requested(const worker *w)
{
    return NULL != w->watcher && __atomic_load_n(&w->watcher->term, __ATOMIC_ACQUIRE);
}

void train_fault_arm(worker *w)
{
    struct train_watcher *t = w->watcher;
    int64_t at = w->cfg.train.kill_at_step;
    if (NULL == t || !w->fault_target || at < 0 || w->step < at ||
        __atomic_load_n(&t->armed, __ATOMIC_ACQUIRE)) {
        return;
    }
    loco_comm_totals tot;
    loco_comm_get_totals(w->comm, &tot);
    t->member_id = w->member_id;
    snprintf(t->fault_path, sizeof t->fault_path, "%s/member.%u.fault.json", w->cfg.run.dir,
             w->member_id);
    t->armed_bytes = tot.bytes_sent;
    t->armed_step = w->step;
    __atomic_store_n(&t->armed, 1, __ATOMIC_RELEASE);
}

/* ---------------------------------------------------------------------------------------------
 * Following the membership */

/* The group changed (a recovery or a sync point): rank, world, strategy, data and metrics
 * follow. */
static loco_status follow_membership(worker *w, loco_error *err)
{
    w->rank = loco_comm_rank(w->comm);
    w->world = loco_comm_size(w->comm);
    w->member_id = loco_comm_member_id(w->comm);
    w->metrics.rank = w->rank;
    if (NULL != w->sync) {
        LOCO_TRY(loco_sync_recovered(w->sync, err));
    }
    if (NULL != w->train_file.tokens) {
        LOCO_TRY(train_deal_data(w, err));
    }
    return LOCO_OK;
}

bool train_repeat_after_loss(worker *w, loco_status *st, loco_error *err)
{
    if (LOCO_ERR_PEER_LOST != *st) {
        return false;
    }
    char cause[sizeof err->msg];
    snprintf(cause, sizeof cause, "%s", err->msg);
    loco_error_clear(err);
    if (!w->ft) {
        *st = loco_error_set(err, LOCO_ERR_PEER_LOST,
                             "worker %d of %d at step %lld: %s; with ft.coordinator: none the "
                             "run cannot continue without the lost worker (use the default "
                             "ft.coordinator: rank0, or --resume from the last checkpoint)",
                             w->rank, w->world, (long long)w->step, cause);
        return false;
    }
    if (w->repeats_in_row++ >= TRAIN_MAX_REPEATS) {
        *st = loco_error_set(err, LOCO_ERR_PEER_LOST,
                             "step %lld: %d recoveries in a row without completing a step; last "
                             "loss: %s",
                             (long long)w->step, TRAIN_MAX_REPEATS, cause);
        return false;
    }
    double fail_wall = loco_wall_s();
    if (0 == w->step_retries) {
        w->fail_wall_s = fail_wall;
    }
    LOCO_WARN("step %lld: %s; recovering with the surviving workers", (long long)w->step, cause);
    if (NULL != w->sync) {
        loco_error ignored = {0};
        loco_sync_quiesce(w->sync, &ignored); /* nothing may be outstanding */
    }
    loco_reconf_report rep;
    loco_status rs = loco_comm_recover(w->comm, &rep);
    if (LOCO_ERR_ABORTED == rs) {
        w->outcome = "evicted";
        *st = loco_error_set(err, LOCO_ERR_ABORTED,
                             "member %u was removed from the group at step %lld (too late for "
                             "an operation, or believed dead): %s",
                             w->member_id, (long long)w->step,
                             rep.note[0] ? rep.note : loco_comm_error(w->comm));
        return false;
    }
    if (LOCO_OK != rs) {
        w->cut_off = true;
        *st = loco_error_set(err, rs, "step %lld: recovering after a lost worker failed: %s "
                                      "(the loss: %s)",
                             (long long)w->step, loco_comm_error(w->comm), cause);
        return false;
    }
    rs = follow_membership(w, err);
    if (LOCO_OK != rs) {
        *st = rs;
        return false;
    }
    w->retries++;
    w->step_retries++;
    train_log_recover(w, &rep, fail_wall, cause);
    *st = LOCO_OK;
    return true;
}

loco_status train_sync_step(worker *w, const loco_sync_step_in *in, loco_sync_step_out *out,
                            loco_error *err)
{
    loco_status st;
    do {
        st = loco_sync_step(w->sync, in, out, err);
    } while (train_repeat_after_loss(w, &st, err));
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Sync points */

bool train_sync_point_due(const worker *w)
{
    if (!w->ft || w->step == w->last_sync_step) {
        return false;
    }
    switch (w->cfg.sync.strategy) {
    case LOCO_SYNC_DILOCO: return w->sync_due || w->step == w->next_sync_step;
    case LOCO_SYNC_STREAMING: return 0 == w->step % w->cfg.sync.h;
    default: return 0 == w->step % w->cfg.train.sync_every;
    }
}

void train_ft_step_done(worker *w, const loco_sync_step_out *out)
{
    if (!w->ft || LOCO_SYNC_DILOCO != w->cfg.sync.strategy || !out->synced) {
        return;
    }
    if (0 == w->cfg.sync.delay) {
        w->sync_due = true; /* the round just ended: its start is the boundary */
    } else {
        w->next_sync_step = w->step + (out->h > 1 ? out->h - 1 : 0); /* before its last step */
    }
}

/* The shared state as the control plane's list (see the file comment). Returns the count, or
 * -1 without memory; *out is allocated. */
static int state_list(worker *w, loco_state_buffer **out)
{
    int n_sync = loco_sync_buffers(w->sync, NULL, 0);
    loco_sync_buffer *sb = calloc((size_t)n_sync + 1, sizeof *sb);
    loco_state_buffer *list = calloc((size_t)n_sync + 8, sizeof *list);
    *out = list;
    if (NULL == sb || NULL == list) {
        free(sb);
        return -1;
    }
    n_sync = loco_sync_buffers(w->sync, sb, n_sync);
    int n = 0;
    list[n++] = (loco_state_buffer){"train.step", &w->step, sizeof w->step};
    list[n++] = (loco_state_buffer){"data.sequences", &w->data_sequences,
                                    sizeof w->data_sequences};
    loco_sync_strategy s = w->cfg.sync.strategy;
    size_t bytes = loco_model_num_params(w->model) * sizeof(float);
    if (LOCO_SYNC_DILOCO != s && LOCO_SYNC_STREAMING != s) {
        list[n++] = (loco_state_buffer){"model.params", loco_model_params(w->model), bytes};
    }
    if (LOCO_SYNC_DDP == s) { /* every replica applies the same averaged gradient */
        for (int k = 0; k < w->optim.slots; k++) { /* "exp_avg", "exp_avg_sq", ... */
            list[n++] = (loco_state_buffer){loco_optim_slot_name(&w->optim, k),
                                            loco_optim_slot(&w->optim, k), bytes};
        }
        list[n++] = (loco_state_buffer){"optim.step", &w->optim.step, sizeof w->optim.step};
    }
    for (int i = 0; i < n_sync && n < LOCO_STATE_MAX_BUFFERS; i++) {
        if (sb[i].shared) {
            size_t elem = LOCO_SYNC_F32 == sb[i].dtype ? sizeof(float) : sizeof(int64_t);
            list[n++] = (loco_state_buffer){sb[i].name, sb[i].data, sb[i].count * elem};
        }
    }
    free(sb);
    return n;
}

/* The state was written (joined, repaired): derived state follows. */
static loco_status state_restored(worker *w, loco_error *err)
{
    loco_sync_restored(w->sync);
    float *params = loco_model_params(w->model);
    const float *shared = loco_sync_eval_params(w->sync, params);
    if (shared != params) { /* diloco, streaming: the replica restarts from theta_global */
        memcpy(params, shared, loco_model_num_params(w->model) * sizeof(float));
    }
    return train_device_state_written(w, err); /* a GPU worker's; no-op on the CPU */
}

loco_status train_sync_point(worker *w, loco_error *err)
{
    w->sync_due = false;
    w->next_sync_step = -1;
    loco_status st;
    do {
        st = loco_sync_quiesce(w->sync, err);
    } while (train_repeat_after_loss(w, &st, err));
    LOCO_TRY(st);
    LOCO_TRY(train_device_state_to_host(w, err)); /* ddp on GPUs: replica and moments */
    loco_state_buffer *state = NULL;
    int n = state_list(w, &state);
    if (n < 0) {
        free(state);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for the state list");
    }
    const loco_train_params *t = &w->cfg.train;
    bool joining = !loco_comm_admitted(w->comm);
    bool by_step = w->fault_target && t->leave_at_step >= 0 && w->step >= t->leave_at_step;
    loco_sync_options opt = {.leave = !joining && (term_requested(w) || by_step)};
    loco_reconf_report rep;
    int64_t step = w->step;
    do {
        st = loco_comm_sync_point(w->comm, (uint64_t)step, state, n, &opt, &rep);
        if (LOCO_OK != st && LOCO_ERR_STOPPED != st && LOCO_ERR_ABORTED != st) {
            loco_error_set(err, st, "sync point at step %lld: %s", (long long)step,
                           loco_comm_error(w->comm));
        }
    } while (train_repeat_after_loss(w, &st, err));
    free(state);
    if (LOCO_ERR_STOPPED == st) {
        w->outcome = "left";
        return loco_error_set(err, st, "member %u left the group at step %lld (%s)",
                              w->member_id, (long long)step,
                              by_step ? "train.leave_at_step" : "SIGTERM");
    }
    if (LOCO_ERR_ABORTED == st) {
        w->outcome = "evicted";
        return loco_error_set(err, st, "member %u was removed from the group at step %lld: %s",
                              w->member_id, (long long)step,
                              rep.note[0] ? rep.note : loco_comm_error(w->comm));
    }
    LOCO_TRY(st);
    w->last_sync_step = w->step;
    if (rep.joined || rep.repaired) {
        LOCO_TRY(state_restored(w, err));
    }
    if (rep.joined || rep.epoch != rep.epoch_before) {
        LOCO_TRY(follow_membership(w, err));
    }
    if (rep.joined || rep.repaired || rep.n_joined || rep.n_left || rep.n_removed ||
        rep.n_repaired) {
        LOCO_TRY(train_log_membership(w, &rep));
    }
    return LOCO_OK;
}
