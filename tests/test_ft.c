/* tests/test_ft.c — the control plane (collectives/membership.h) over the in-process backend:
 * single verdicts, recovery after crashes (a member, two at once, the coordinator's host), sync
 * points with parity repair, leaving and joining with striped state transfer, a standalone
 * coordinator and its failover (deadlines and stragglers: test_ft_deadline.c; authentication
 * and integrity: test_ft_auth.c).
 *
 * A crash is loco_comm_crash: the member's sockets are reset and its coordinator (if it hosts
 * one) vanishes, as when its process is killed. Every test asserts on what the survivors report:
 * statuses, epochs, world sizes, bit-identical results and state digests, membership counts.
 */
#include "test_ft_common.h"

/* ---- verdicts ------------------------------------------------------------------------------- */

static void body_commits(rank_slot *s)
{
    size_t n = 30011;
    float *x = malloc(n * sizeof *x);
    for (int k = 0; k < 5; k++) {
        fill(x, n, loco_comm_member_id(s->comm));
        s->st[k] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[k]);
        s->digest[k] = s->info[k].digest;
    }
    loco_ft_totals *t = s->out = calloc(1, sizeof *t);
    loco_comm_get_ft_totals(s->comm, t);
    free(x);
}

Test(ft, every_operation_is_committed_by_one_verdict, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    run_ranks(4, &cfg, body_commits, NULL, slots);
    for (int r = 0; r < 4; r++) {
        const loco_ft_totals *t = slots[r].out;
        for (int k = 0; k < 5; k++) {
            cr_assert_eq(LOCO_OK, slots[r].st[k], "rank %d op %d: %s", r, k,
                         slots[r].info[k].error);
            cr_assert_eq(slots[0].digest[k], slots[r].digest[k], "rank %d op %d differs", r, k);
        }
        cr_assert_eq(5, t->ops_committed, "rank %d: %llu committed", r,
                     (unsigned long long)t->ops_committed);
        cr_assert_eq(0, t->ops_aborted);
        cr_assert_eq(4, t->counts.started);
        cr_assert_eq(r == 0, t->coordinator_here, "rank %d: coordinator_here", r);
        free(slots[r].out);
    }
}

/* ---- recovery ------------------------------------------------------------------------------- */

typedef struct crash_case {
    int victims[2];
    int nvictims;
    size_t count;
} crash_case;

/* Every member runs allreduces; the victims crash inside the second. Survivors recover and
 * repeat, and their results are bit-identical and equal to the sum over the survivors. */
static void body_crash(rank_slot *s)
{
    const crash_case *c = s->arg;
    size_t n = c->count;
    float *x = malloc(n * sizeof *x);
    uint32_t id = loco_comm_member_id(s->comm);
    bool victim = false;
    for (int k = 0; k < c->nvictims; k++) {
        victim = victim || c->victims[k] == s->rank;
    }
    fill(x, n, id);
    s->st[0] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[0]);
    fill(x, n, id);
    if (victim) {
        loco_request_t req = NULL;
        loco_iallreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &req);
        usleep(3000);
        loco_comm_crash(s->comm);
        s->st[1] = LOCO_ERR_PEER_LOST; /* it died */
        free(x);
        return;
    }
    double t0 = loco_now_s();
    s->st[1] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[1]);
    int tries = 0;
    while (LOCO_ERR_PEER_LOST == s->st[1] && tries++ < 3) {
        loco_reconf_report rep;
        s->st[2] = loco_comm_recover(s->comm, &rep);
        s->seconds[0] = loco_now_s() - t0; /* from the failure to the recovered group */
        if (LOCO_OK != s->st[2]) {
            break;
        }
        fill(x, n, id); /* the input was restored in place; refill to be sure */
        s->st[1] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM,
                                  &s->info[1]);
    }
    s->digest[0] = s->info[1].digest;
    s->digest[1] = loco_comm_size(s->comm);
    s->digest[2] = loco_comm_epoch(s->comm);
    uint32_t ids[MAX_RANKS];
    int nids = 0;
    for (int r = 0; r < 4; r++) {
        bool dead = false;
        for (int k = 0; k < c->nvictims; k++) {
            dead = dead || c->victims[k] == r;
        }
        if (!dead) {
            ids[nids++] = (uint32_t)r;
        }
    }
    s->st[3] = close_to_sum(x, n, ids, nids) ? LOCO_OK : LOCO_ERR_INTERNAL;
    loco_ft_totals *t = s->out = calloc(1, sizeof *t);
    loco_comm_get_ft_totals(s->comm, t);
    free(x);
}

static void check_crash(const crash_case *c)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    run_ranks(4, &cfg, body_crash, (void *)c, slots);
    int first = -1;
    for (int r = 0; r < 4; r++) {
        bool dead = false;
        for (int k = 0; k < c->nvictims; k++) {
            dead = dead || c->victims[k] == r;
        }
        cr_assert_eq(LOCO_OK, slots[r].st[0], "rank %d first op: %s", r, slots[r].info[0].error);
        if (dead) {
            continue;
        }
        first = first < 0 ? r : first;
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d: %s (recover %d)", r,
                     slots[r].info[1].error, slots[r].st[2]);
        cr_assert_eq(4 - c->nvictims, (int)slots[r].digest[1], "rank %d: world %llu", r,
                     (unsigned long long)slots[r].digest[1]);
        cr_assert_eq(slots[first].digest[0], slots[r].digest[0], "rank %d's result differs", r);
        cr_assert_eq(slots[first].digest[2], slots[r].digest[2], "rank %d: another epoch", r);
        cr_assert_eq(LOCO_OK, slots[r].st[3], "rank %d: not the sum over the survivors", r);
        cr_assert(slots[r].seconds[0] < 3.0, "rank %d recovered after %.2f s", r,
                  slots[r].seconds[0]);
        const loco_ft_totals *t = slots[r].out;
        cr_assert_eq((uint32_t)c->nvictims, t->counts.died, "rank %d: %u died", r,
                     t->counts.died);
        cr_assert_eq(4, t->counts.started);
        free(slots[r].out);
    }
}

Test(ft, a_member_crashing_mid_allreduce_is_recovered_from, .timeout = 60)
{
    crash_case c = {.victims = {2}, .nvictims = 1, .count = 1 << 20};
    check_crash(&c);
}

Test(ft, two_members_crashing_at_once, .timeout = 60)
{
    crash_case c = {.victims = {1, 3}, .nvictims = 2, .count = 1 << 20};
    check_crash(&c);
}

Test(ft, the_coordinators_host_crashing_fails_over, .timeout = 60)
{
    crash_case c = {.victims = {0}, .nvictims = 1, .count = 1 << 20};
    check_crash(&c);
}

/* ---- sync points: parity, leave, join ------------------------------------------------------- */

#define STATE_FLOATS 200003

typedef struct shared_state {
    float *params;       /* (STATE_FLOATS) */
    uint64_t step;
    uint64_t cursor[2];
    loco_state_buffer bufs[3];
} shared_state;

static void state_init(shared_state *st, uint32_t seed)
{
    st->params = malloc(STATE_FLOATS * sizeof *st->params);
    for (size_t i = 0; i < STATE_FLOATS; i++) {
        st->params[i] = input_value((int)seed, i);
    }
    st->step = 0;
    st->cursor[0] = 7;
    st->cursor[1] = seed;
    st->bufs[0] = (loco_state_buffer){"params", st->params, STATE_FLOATS * sizeof(float)};
    st->bufs[1] = (loco_state_buffer){"step", &st->step, sizeof st->step};
    st->bufs[2] = (loco_state_buffer){"cursor", st->cursor, sizeof st->cursor};
}

static uint64_t state_digest(const shared_state *st)
{
    uint64_t d[3];
    loco_state_digests(st->bufs, 3, d);
    return loco_hash64(d, sizeof d, 0);
}

/* Everyone starts from seed 1, except rank 1 whose parameters drifted: the sync point repairs
 * it from the majority. */
static void body_parity(rank_slot *s)
{
    shared_state st;
    state_init(&st, 1);
    if (1 == s->rank) {
        st.params[12345] += 1.0f;
        st.cursor[0] = 99;
    }
    loco_reconf_report rep;
    s->st[0] = loco_comm_sync_point(s->comm, 10, st.bufs, 3, NULL, &rep);
    s->digest[0] = state_digest(&st);
    s->digest[1] = rep.repaired;
    s->digest[2] = (uint64_t)rep.n_repaired;
    s->digest[3] = rep.state_bytes_received;
    s->digest[4] = loco_comm_epoch(s->comm);
    /* a second sync point with nothing to do is one round trip */
    double t0 = loco_now_s();
    s->st[1] = loco_comm_sync_point(s->comm, 11, st.bufs, 3, NULL, &rep);
    s->seconds[0] = loco_now_s() - t0;
    s->digest[5] = rep.n_repaired;
    free(st.params);
}

Test(ft, sync_point_repairs_a_diverged_member_from_the_majority, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    run_ranks(4, &cfg, body_parity, NULL, slots);
    for (int r = 0; r < 4; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0], "rank %d: %d", r, slots[r].st[0]);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d second sync point: %d", r, slots[r].st[1]);
        cr_assert_eq(slots[0].digest[0], slots[r].digest[0], "rank %d still differs", r);
        cr_assert_eq(1 == r, slots[r].digest[1], "rank %d: repaired flag", r);
        cr_assert_eq(1, slots[r].digest[2], "rank %d: %llu repairs reported", r,
                     (unsigned long long)slots[r].digest[2]);
        cr_assert_eq(0, slots[r].digest[4], "a repair needs no new epoch (rank %d: epoch %llu)",
                     r, (unsigned long long)slots[r].digest[4]);
        cr_assert_eq(0, slots[r].digest[5]);
    }
    /* only the differing buffers moved: params + cursor, not step */
    cr_assert_eq(STATE_FLOATS * sizeof(float) + 16, slots[1].digest[3], "received %llu bytes",
                 (unsigned long long)slots[1].digest[3]);
}

typedef struct leave_case {
    int leaver;
} leave_case;

/* The leaver asks to leave at the third sync point; the others go on without an abort. */
static void body_leave(rank_slot *s)
{
    const leave_case *c = s->arg;
    shared_state st;
    state_init(&st, 1);
    size_t n = 4096;
    float *x = malloc(n * sizeof *x);
    for (int step = 0; step < 5; step++) {
        loco_sync_options opt = {.leave = s->rank == c->leaver && 2 == step};
        loco_reconf_report rep;
        loco_status sst = loco_comm_sync_point(s->comm, (uint64_t)step, st.bufs, 3, &opt, &rep);
        if (opt.leave) {
            s->st[0] = sst;
            s->digest[0] = rep.left;
            break;
        }
        s->st[step] = sst;
        fill(x, n, loco_comm_member_id(s->comm));
        loco_status ast = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM,
                                         &s->info[step]);
        s->st[8 + step] = ast; /* no operation may abort because someone left */
        s->digest[8 + step] = s->info[step].digest;
    }
    s->digest[1] = loco_comm_size(s->comm);
    loco_ft_totals *t = s->out = calloc(1, sizeof *t);
    loco_comm_get_ft_totals(s->comm, t);
    free(x);
    free(st.params);
}

static void check_leave(int leaver)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    leave_case c = {.leaver = leaver};
    run_ranks(4, &cfg, body_leave, &c, slots);
    int first = 0 == leaver ? 1 : 0;
    for (int r = 0; r < 4; r++) {
        const loco_ft_totals *t = slots[r].out;
        if (r == leaver) {
            cr_assert_eq(LOCO_ERR_STOPPED, slots[r].st[0], "the leaver got %d", slots[r].st[0]);
            cr_assert_eq(1, slots[r].digest[0], "report.left not set");
            free(slots[r].out);
            continue;
        }
        for (int step = 0; step < 5; step++) {
            cr_assert_eq(LOCO_OK, slots[r].st[step], "rank %d sync %d: %d", r, step,
                         slots[r].st[step]);
            cr_assert_eq(LOCO_OK, slots[r].st[8 + step], "rank %d allreduce %d: %s", r, step,
                         slots[r].info[step].error);
            cr_assert_eq(slots[first].digest[8 + step], slots[r].digest[8 + step]);
        }
        cr_assert_eq(3, slots[r].digest[1], "rank %d: world %llu", r,
                     (unsigned long long)slots[r].digest[1]);
        cr_assert_eq(1, t->counts.left, "rank %d: left %u", r, t->counts.left);
        cr_assert_eq(0, t->counts.died + t->counts.evicted);
        cr_assert_eq(0, t->ops_aborted, "rank %d: %llu operations aborted", r,
                     (unsigned long long)t->ops_aborted);
        free(slots[r].out);
    }
}

Test(ft, a_member_leaves_at_a_sync_point_without_aborting_anything, .timeout = 60)
{
    check_leave(2);
}

Test(ft, the_coordinators_host_leaves_and_another_member_takes_over, .timeout = 60)
{
    check_leave(0);
}

/* A process joins a running group: it dials a member (not the coordinator: it is redirected),
 * is admitted at the group's next sync point and receives the state, striped over every
 * member's streams; then it takes part in an allreduce. */
typedef struct join_case {
    pthread_mutex_t lock;
    char addr[128];       /* a member's worker address, once known */
    bool addr_fixed;      /* addr is given (the coordinator's): members do not publish theirs */
    bool wrong_key;
    loco_status st, init_st, sync_st;
    loco_reconf_report rep;
    uint64_t state_digest, result;
    char err[512];
} join_case;

static void *joiner_thread(void *p)
{
    join_case *c = p;
    char addr[128] = "";
    for (int i = 0; i < 500 && '\0' == addr[0]; i++) {
        pthread_mutex_lock(&c->lock);
        snprintf(addr, sizeof addr, "%s", c->addr);
        pthread_mutex_unlock(&c->lock);
        usleep(10000);
    }
    loco_comm_config cfg = ft_config();
    cfg.bootstrap = LOCO_BOOTSTRAP_ADMIT;
    snprintf(cfg.join, sizeof cfg.join, "%s", addr);
    if (c->wrong_key) {
        memset(cfg.key, 0x77, sizeof cfg.key);
    }
    cfg.connect_timeout_s = 3;
    loco_comm_t comm = NULL;
    loco_error err = {0};
    c->init_st = loco_comm_init(&comm, &cfg, &err);
    snprintf(c->err, sizeof c->err, "%s", err.msg);
    if (LOCO_OK != c->init_st) {
        return NULL;
    }
    shared_state st;
    state_init(&st, 77); /* not the group's: it must be overwritten */
    c->sync_st = loco_comm_sync_point(comm, 0, st.bufs, 3, NULL, &c->rep);
    c->state_digest = state_digest(&st);
    loco_op_info info;
    c->st = loco_allreduce(comm, st.params, st.params, STATE_FLOATS, LOCO_DTYPE_F32,
                           LOCO_REDUCE_AVG, &info);
    c->result = info.digest;
    loco_comm_free(comm);
    free(st.params);
    return NULL;
}

static void body_hosts_a_joiner(rank_slot *s)
{
    join_case *c = s->arg;
    shared_state st;
    state_init(&st, 1);
    if (1 == s->rank && !c->addr_fixed) {
        pthread_mutex_lock(&c->lock);
        snprintf(c->addr, sizeof c->addr, "127.0.0.1:%u", s->comm->members[1].port);
        pthread_mutex_unlock(&c->lock);
    }
    int step = 0;
    for (; step < 100; step++) {
        loco_reconf_report rep;
        s->st[0] = loco_comm_sync_point(s->comm, st.step, st.bufs, 3, NULL, &rep);
        if (LOCO_OK != s->st[0] || loco_comm_size(s->comm) > s->world ||
            (c->wrong_key && step >= 30)) {
            s->digest[2] = rep.state_bytes_sent;
            break;
        }
        st.step++;
        usleep(20000);
    }
    s->digest[0] = state_digest(&st);
    if (!c->wrong_key) {
        loco_op_info info;
        s->st[1] = loco_allreduce(s->comm, st.params, st.params, STATE_FLOATS, LOCO_DTYPE_F32,
                                  LOCO_REDUCE_AVG, &info);
        s->digest[1] = info.digest;
    }
    loco_ft_totals *t = s->out = calloc(1, sizeof *t);
    loco_comm_get_ft_totals(s->comm, t);
    free(st.params);
}

Test(ft, a_joiner_is_admitted_at_a_sync_point_and_receives_the_state, .timeout = 60)
{
    join_case c = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t th;
    pthread_create(&th, NULL, joiner_thread, &c);
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    run_ranks(3, &cfg, body_hosts_a_joiner, &c, slots);
    pthread_join(th, NULL);
    cr_assert_eq(LOCO_OK, c.init_st, "joiner init: %s", c.err);
    cr_assert_eq(LOCO_OK, c.sync_st, "joiner sync: %d", c.sync_st);
    cr_assert(c.rep.joined, "report.joined not set");
    cr_assert_eq(4, c.rep.world);
    cr_assert_eq(3, c.rep.rank);
    cr_assert_eq(STATE_FLOATS * sizeof(float) + 8 + 16, c.rep.state_bytes_received);
    cr_assert_eq(LOCO_OK, c.st);
    uint64_t sent = 0;
    for (int r = 0; r < 3; r++) {
        const loco_ft_totals *t = slots[r].out;
        cr_assert_eq(LOCO_OK, slots[r].st[0]);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d allreduce: %d", r, slots[r].st[1]);
        cr_assert_eq(slots[r].digest[0], c.state_digest, "rank %d's state differs from the "
                                                         "joiner's", r);
        cr_assert_eq(slots[r].digest[1], c.result);
        cr_assert_eq(1, t->counts.joined);
        sent += slots[r].digest[2];
        cr_assert(slots[r].digest[2] > 0, "rank %d sent no state: not striped over members", r);
        free(slots[r].out);
    }
    cr_assert_eq(c.rep.state_bytes_received, sent);
}

Test(ft, a_joiner_without_the_run_key_is_refused, .timeout = 60)
{
    join_case c = {.lock = PTHREAD_MUTEX_INITIALIZER, .wrong_key = true};
    pthread_t th;
    pthread_create(&th, NULL, joiner_thread, &c);
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    run_ranks(3, &cfg, body_hosts_a_joiner, &c, slots);
    pthread_join(th, NULL);
    cr_assert_eq(LOCO_ERR_AUTH, c.init_st, "joiner init: %d %s", c.init_st, c.err);
    cr_assert(NULL != strstr(c.err, "run key"), "%s", c.err);
    for (int r = 0; r < 3; r++) {
        const loco_ft_totals *t = slots[r].out;
        cr_assert_eq(LOCO_OK, slots[r].st[0]);
        cr_assert_eq(3, t->counts.started);
        cr_assert_eq(0, t->counts.joined);
        free(slots[r].out);
    }
}

/* ---- a standalone coordinator, and its failover ---------------------------------------------- */

typedef struct external_case {
    loco_coord *coord;
    pthread_barrier_t started;
} external_case;

/* Three allreduces; after the first, the test stops the standalone coordinator: the members
 * fail over to rank 0 and carry on. */
static void body_external(rank_slot *s)
{
    external_case *c = s->arg;
    float x[1000];
    for (int k = 0; k < 3; k++) {
        fill(x, 1000, loco_comm_member_id(s->comm));
        s->st[k] = loco_allreduce(s->comm, x, x, 1000, LOCO_DTYPE_F32, LOCO_REDUCE_SUM,
                                  &s->info[k]);
        while (LOCO_ERR_PEER_LOST == s->st[k] && LOCO_OK == loco_comm_recover(s->comm, NULL)) {
            fill(x, 1000, loco_comm_member_id(s->comm));
            s->st[k] = loco_allreduce(s->comm, x, x, 1000, LOCO_DTYPE_F32, LOCO_REDUCE_SUM,
                                      &s->info[k]);
        }
        s->digest[k] = s->info[k].digest;
        if (0 == k) {
            pthread_barrier_wait(&c->started);
            pthread_barrier_wait(&c->started); /* the coordinator is gone now */
        }
    }
    loco_ft_totals *t = s->out = calloc(1, sizeof *t);
    loco_comm_get_ft_totals(s->comm, t);
}

static void *stop_coordinator(void *p)
{
    external_case *c = p;
    pthread_barrier_wait(&c->started);
    loco_coord_stop(c->coord);
    pthread_barrier_wait(&c->started);
    return NULL;
}

Test(ft, a_standalone_coordinator_serves_the_run_and_rank_0_takes_over, .timeout = 60)
{
    loco_coord_config cc = {.comm = ft_config(), .listen = "127.0.0.1:0"};
    external_case c;
    cr_assert_eq(LOCO_OK, loco_coord_start(&c.coord, &cc, NULL));
    pthread_barrier_init(&c.started, NULL, 4);
    loco_comm_config cfg = ft_config();
    cfg.ft.coordinator = LOCO_COORD_EXTERNAL;
    snprintf(cfg.ft.coordinator_addr, sizeof cfg.ft.coordinator_addr, "127.0.0.1:%d",
             loco_coord_port(c.coord));
    pthread_t th;
    pthread_create(&th, NULL, stop_coordinator, &c);
    rank_slot slots[MAX_RANKS];
    run_ranks(3, &cfg, body_external, &c, slots);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&c.started);
    for (int r = 0; r < 3; r++) {
        const loco_ft_totals *t = slots[r].out;
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(LOCO_OK, slots[r].st[k], "rank %d op %d: %s", r, k,
                         slots[r].info[k].error);
            cr_assert_eq(slots[0].digest[k], slots[r].digest[k]);
        }
        cr_assert_eq(1, t->failovers, "rank %d: %u failovers", r, t->failovers);
        cr_assert_eq(0 == r, t->coordinator_here, "rank %d: coordinator_here", r);
        cr_assert_eq(3, t->counts.started);
        cr_assert_eq(0, t->counts.died + t->counts.evicted, "nobody was lost");
        free(slots[r].out);
    }
}

/* A joiner given the standalone coordinator's address registers with it directly. */
Test(ft, a_joiner_dials_a_standalone_coordinator_directly, .timeout = 60)
{
    loco_coord_config cc = {.comm = ft_config(), .listen = "127.0.0.1:0"};
    loco_coord *coord = NULL;
    cr_assert_eq(LOCO_OK, loco_coord_start(&coord, &cc, NULL));
    join_case c = {.lock = PTHREAD_MUTEX_INITIALIZER, .addr_fixed = true};
    snprintf(c.addr, sizeof c.addr, "127.0.0.1:%d", loco_coord_port(coord));
    pthread_t th;
    pthread_create(&th, NULL, joiner_thread, &c);
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    cfg.ft.coordinator = LOCO_COORD_EXTERNAL;
    snprintf(cfg.ft.coordinator_addr, sizeof cfg.ft.coordinator_addr, "%s", c.addr);
    run_ranks(2, &cfg, body_hosts_a_joiner, &c, slots);
    pthread_join(th, NULL);
    loco_coord_stats stats;
    loco_coord_get_stats(coord, &stats);
    loco_coord_stop(coord);
    cr_assert_eq(LOCO_OK, c.init_st, "joiner init: %s", c.err);
    cr_assert_eq(LOCO_OK, c.sync_st);
    cr_assert(c.rep.joined);
    cr_assert_eq(3, c.rep.world);
    cr_assert_eq(1, stats.counts.joined);
    cr_assert_eq(2, stats.counts.started);
    for (int r = 0; r < 2; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d allreduce: %d", r, slots[r].st[1]);
        cr_assert_eq(slots[r].digest[0], c.state_digest);
        cr_assert_eq(slots[r].digest[1], c.result);
        free(slots[r].out);
    }
}
