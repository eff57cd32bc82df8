/* tests/test_ft_deadline.c — per-operation deadlines and stragglers (collectives/membership.h)
 * over the in-process backend: a live member that starts an operation too late is evicted at
 * the fixed deadline; with the WAIT policy it is waited for; the adaptive deadline (median +
 * k * MAD of recent operations) catches it long before a generous fixed one would.
 */
#include "test_ft_common.h"

/* ---- stragglers ----------------------------------------------------------------------------- */

typedef struct straggler_case {
    double late_s;  /* rank 2 starts the allreduce this late */
    int warmup;     /* prompt allreduces before (they feed the adaptive deadline) */
} straggler_case;

/* Rank 2 is alive (its loop heartbeats) but starts an allreduce late. If it is evicted, the
 * others recover without it and its own recovery tells it it is out. */
static void body_straggler(rank_slot *s)
{
    const straggler_case *c = s->arg;
    size_t n = 1000;
    float x[1000];
    uint32_t id = loco_comm_member_id(s->comm);
    for (int k = 0; k < c->warmup; k++) {
        fill(x, n, id);
        s->st[8] |= loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, NULL);
    }
    fill(x, n, id);
    if (2 == s->rank) {
        usleep((useconds_t)(c->late_s * 1e6));
    }
    double t0 = loco_now_s();
    s->st[0] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[0]);
    s->seconds[0] = loco_now_s() - t0;
    s->digest[0] = s->info[0].digest;
    s->digest[1] = loco_comm_size(s->comm);
    if (LOCO_ERR_PEER_LOST == s->st[0] || LOCO_ERR_ABORTED == s->st[0]) {
        loco_reconf_report rep;
        s->st[1] = loco_comm_recover(s->comm, &rep);
        s->digest[3] = rep.evicted;
        if (LOCO_OK == s->st[1]) {
            fill(x, n, id);
            s->st[2] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM,
                                      &s->info[2]);
            s->digest[0] = s->info[2].digest;
            s->digest[1] = loco_comm_size(s->comm);
        }
    }
    loco_ft_totals *t = s->out = calloc(1, sizeof *t);
    loco_comm_get_ft_totals(s->comm, t);
}

/* The straggler was evicted after about `deadline` seconds; the others carry on without it. */
static void check_evicted(rank_slot *slots, double lo, double hi)
{
    for (int r = 0; r < 4; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[8], "rank %d: warm-up failed", r);
        if (2 == r) {
            cr_assert_neq(LOCO_OK, slots[r].st[0], "the straggler's allreduce succeeded");
            cr_assert_eq(LOCO_ERR_ABORTED, slots[r].st[1], "the straggler's recovery: %d",
                         slots[r].st[1]);
            cr_assert_eq(1, slots[r].digest[3], "the straggler was not told it is out");
            free(slots[r].out);
            continue;
        }
        cr_assert_eq(LOCO_ERR_PEER_LOST, slots[r].st[0], "rank %d: %d", r, slots[r].st[0]);
        cr_assert(slots[r].seconds[0] > lo && slots[r].seconds[0] < hi,
                  "rank %d gave up after %.2f s (expected %.2f..%.2f s)", r, slots[r].seconds[0],
                  lo, hi);
        cr_assert(NULL != strstr(slots[r].info[0].error, "rank 2 never started it"), "rank %d: %s",
                  r, slots[r].info[0].error);
        cr_assert_eq(LOCO_OK, slots[r].st[1]);
        cr_assert_eq(LOCO_OK, slots[r].st[2], "rank %d: %s", r, slots[r].info[2].error);
        cr_assert_eq(3, slots[r].digest[1]);
        cr_assert_eq(slots[0].digest[0], slots[r].digest[0]);
        const loco_ft_totals *t = slots[r].out;
        cr_assert_eq(1, t->counts.evicted, "rank %d: %u evicted", r, t->counts.evicted);
        cr_assert_eq(0, t->counts.died);
        free(slots[r].out);
    }
}

Test(ft, a_straggler_is_evicted_at_the_operation_deadline, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    cfg.ft.op_deadline_s = 1.0;
    straggler_case c = {.late_s = 2.5};
    run_ranks(4, &cfg, body_straggler, &c, slots);
    check_evicted(slots, 0.9, 2.0);
}

Test(ft, the_wait_policy_keeps_a_live_straggler, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    cfg.ft.op_deadline_s = 0.5;
    cfg.ft.straggler = LOCO_STRAGGLER_WAIT;
    cfg.ft.straggler_wait_s = 5.0;
    straggler_case c = {.late_s = 1.5};
    run_ranks(4, &cfg, body_straggler, &c, slots);
    for (int r = 0; r < 4; r++) {
        const loco_ft_totals *t = slots[r].out;
        cr_assert_eq(LOCO_OK, slots[r].st[0], "rank %d: %s", r, slots[r].info[0].error);
        cr_assert_eq(4, slots[r].digest[1]);
        cr_assert_eq(slots[0].digest[0], slots[r].digest[0]);
        cr_assert_eq(0, t->counts.evicted);
        free(slots[r].out);
    }
}

/* Fixed deadline 30 s; after a few prompt operations the adaptive one is well under a second,
 * so a member 2.5 s late is evicted long before 30 s. */
Test(ft, the_adaptive_deadline_evicts_early, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = ft_config();
    cfg.ft.op_deadline_s = 30.0;
    cfg.ft.adaptive_deadline = true;
    cfg.ft.deadline_window = 4;
    cfg.ft.deadline_k = 6.0;
    cfg.ft.deadline_min_s = 0.3;
    straggler_case c = {.late_s = 2.5, .warmup = 6};
    run_ranks(4, &cfg, body_straggler, &c, slots);
    check_evicted(slots, 0.25, 1.5);
}

Test(ft, adaptive_deadline_is_median_plus_k_mad_clamped)
{
    double t[7] = {1.0, 1.2, 0.9, 1.1, 1.0, 5.0, 1.0}; /* one outlier */
    /* median 1.0, deviations {0, .2, .1, .1, 0, 4, 0} -> MAD 0.1; 1.0 + 6 * 0.1 = 1.6 */
    cr_assert_float_eq(loco_adaptive_deadline(t, 7, 6.0, 0.1, 100.0), 1.6, 1e-9);
    cr_assert_float_eq(loco_adaptive_deadline(t, 7, 6.0, 2.0, 100.0), 2.0, 1e-9); /* floor */
    cr_assert_float_eq(loco_adaptive_deadline(t, 7, 6.0, 0.1, 1.5), 1.5, 1e-9);   /* ceiling */
    double same[4] = {2.0, 2.0, 2.0, 2.0}; /* no spread: 10% of the median stands in for MAD */
    cr_assert_float_eq(loco_adaptive_deadline(same, 4, 5.0, 0.1, 100.0), 3.0, 1e-9);
}

