/* collectives/coord_time.c — the coordinator's decisions driven by time and by failover (its
 * thread, state in coord_impl.h):
 *
 *   deadlines     fixed (ft.op_deadline) or adaptive: median + k * MAD of recent operations;
 *                 with the WAIT policy, ft.straggler_wait for a live straggler.
 *   stragglers    at the deadline: members that never began the operation, members silent for
 *                 two heartbeats, or the higher-id end of a pair waiting on each other (a frozen
 *                 link) are evicted; late reconfiguration requests and rounds evict the same way.
 *   takeover      a coordinator started by a member after the old one was lost waits for the
 *                 members to register, then settles the operation in flight: COMMITTED if any
 *                 member saw it committed (or all of them hold the same digest), else ABORTED.
 */
#include "collectives/coord_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- deadlines ------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double loco_adaptive_deadline(const double *recent, int n, double k, double lo, double hi)
{
    double v[COORD_RECENT_MAX], dev[COORD_RECENT_MAX];
    n = n < COORD_RECENT_MAX ? n : COORD_RECENT_MAX;
    memcpy(v, recent, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    for (int i = 0; i < n; i++) {
        dev[i] = fabs(v[i] - median);
    }
    qsort(dev, (size_t)n, sizeof *dev, cmp_double);
    double mad = n % 2 ? dev[n / 2] : 0.5 * (dev[n / 2 - 1] + dev[n / 2]);
    mad = mad > 0.1 * median ? mad : 0.1 * median; /* identical times would give a zero spread */
    double d = median + k * mad;
    return d < lo ? lo : d > hi ? hi : d;
}

double coord_deadline_s(const loco_coord *c)
{
    const loco_ft_config *ft = &c->cfg.ft;
    if (LOCO_STRAGGLER_WAIT == ft->straggler) {
        return ft->straggler_wait_s;
    }
    int window = ft->deadline_window < c->nrecent ? ft->deadline_window : c->nrecent;
    if (ft->adaptive_deadline && window >= 2 && window >= ft->deadline_window / 2) {
        double last[COORD_RECENT_MAX];
        for (int i = 0; i < window; i++) {
            last[i] = c->recent[(c->recent_head - 1 - i + COORD_RECENT_MAX) % COORD_RECENT_MAX];
        }
        return loco_adaptive_deadline(last, window, ft->deadline_k, ft->deadline_min_s,
                                      ft->deadline_max_s);
    }
    return ft->op_deadline_s;
}

static uint64_t ns(double s) { return (uint64_t)(s * 1e9); }

/* ---- takeover ------------------------------------------------------------------------------- */

void coord_on_register(loco_coord *c, int i, const loco_msg_register *reg)
{
    coord_member *m = &c->mem[i];
    loco_membership_counts *k = &c->counts;
    const loco_membership_counts *r = &reg->counts;
    k->started = r->started > k->started ? r->started : k->started;
    k->died = r->died > k->died ? r->died : k->died;
    k->evicted = r->evicted > k->evicted ? r->evicted : k->evicted;
    k->joined = r->joined > k->joined ? r->joined : k->joined;
    k->left = r->left > k->left ? r->left : k->left;
    c->step = reg->step > c->step ? reg->step : c->step;
    m->reg_epoch = reg->epoch;
    m->reg_done_seq = reg->done_seq;
    m->reg_verdict = reg->done_verdict;
    m->reg_pend_seq = reg->pend_seq;
    m->reg_pend_digest = reg->pend_digest;
    if (!c->takeover) {
        return;
    }
    for (int r2 = 0; r2 < c->world; r2++) {
        const coord_member *o = &c->mem[c->ranks[r2]];
        if (CM_MEMBER == o->state && !o->registered && o->m.id != c->lost_host) {
            return; /* wait for the others (or the grace period) */
        }
    }
    coord_tick(c, UINT64_MAX - 1); /* everyone who can come is back */
}

/* Settle the operation in flight at the failover, the same way for every member. */
static void takeover_finish(loco_coord *c)
{
    c->takeover = false;
    bool missing = false;
    int back = 0;
    for (int r = 0; r < c->world; r++) {
        back += CM_MEMBER == c->mem[c->ranks[r]].state && c->mem[c->ranks[r]].registered;
    }
    if (back <= 1 && c->world > 2) {
        /* Nobody but this coordinator's own host came back: far more likely that the host was
         * cut off (stopped, partitioned) while the others went on under another coordinator
         * than that all of them died at once. A group of one must not go on training beside
         * the real one: form nothing; the host's recovery gives up at ft.sync_timeout. */
        LOCO_WARN("coordinator: after the takeover of epoch %u only its own host came back: it "
                  "was cut off from the group, which goes on without it",
                  c->epoch);
        coord_event(c, "takeover_alone", "\"world\": %d", c->world);
        return;
    }
    for (int r = 0; r < c->world; r++) {
        int i = c->ranks[r];
        if (CM_MEMBER == c->mem[i].state && !c->mem[i].registered) {
            c->mem[i].state = CM_DEAD;
            c->counts.died++;
            missing = true;
            LOCO_WARN("coordinator: member %u (rank %d) did not come back after the failover",
                      c->mem[i].m.id, r);
            coord_event(c, "died", "\"id\": %u, \"rank\": %d", c->mem[i].m.id, r);
        }
    }
    uint64_t seq = 0;
    for (int r = 0; r < c->world; r++) {
        const coord_member *m = &c->mem[c->ranks[r]];
        if (CM_MEMBER == m->state && m->reg_epoch == c->epoch) {
            seq = m->reg_pend_seq > seq ? m->reg_pend_seq : seq;
            seq = m->reg_done_seq > seq ? m->reg_done_seq : seq;
        }
    }
    bool committed = false, aborted = false, agree = !missing, any_pending = false;
    uint64_t digest = 0;
    bool have_digest = false;
    for (int r = 0; r < c->world && seq > 0; r++) {
        const coord_member *m = &c->mem[c->ranks[r]];
        if (CM_MEMBER != m->state) {
            continue;
        }
        if (m->reg_epoch != c->epoch) {
            agree = false;
            continue;
        }
        if (m->reg_done_seq == seq) {
            committed = committed || LOCO_VERDICT_COMMITTED == m->reg_verdict;
            aborted = aborted || LOCO_VERDICT_ABORTED == m->reg_verdict;
        } else if (m->reg_pend_seq == seq) {
            any_pending = true;
            agree = agree && (!have_digest || digest == m->reg_pend_digest);
            digest = m->reg_pend_digest;
            have_digest = true;
        } else {
            agree = false; /* it never finished this operation */
        }
    }
    c->op_seq = c->decided_seq = seq;
    coord_event(c, "takeover_resolve", "\"seq\": %llu, \"pending\": %s, \"committed\": %s, "
                                       "\"aborted\": %s, \"agree\": %s",
                (unsigned long long)seq, any_pending ? "true" : "false",
                committed ? "true" : "false", aborted ? "true" : "false", agree ? "true" : "false");
    if (any_pending) {
        bool commit = committed || (!aborted && agree);
        if (commit) {
            c->ops_committed++;
        } else {
            c->ops_aborted++;
        }
        coord_send_verdict(c, seq, commit ? LOCO_VERDICT_COMMITTED : LOCO_VERDICT_ABORTED, -1,
                     LOCO_ERR_PEER_LOST, "the coordinator was lost during the operation", -1);
        coord_event(c, commit ? "commit" : "abort", "\"seq\": %llu, \"takeover\": true",
                    (unsigned long long)seq);
    }
    LOCO_INFO("coordinator: took over epoch %u (%d members%s)", c->epoch, c->world,
              missing ? ", some lost" : "");
    bool requests = false;
    uint32_t kind = LOCO_RECONF_RECOVER;
    for (int i = 0; i < c->nmem; i++) {
        if (CM_MEMBER == c->mem[i].state && c->mem[i].has_req) {
            requests = true;
            kind = c->mem[i].req.kind;
        }
    }
    if (missing || requests) {
        if (missing && !requests) {
            coord_abort_op(c, seq + 1, -1, LOCO_ERR_PEER_LOST, "members were lost with the coordinator",
                     -1);
        } else {
            coord_start_reconf(c, kind);
            /* members may be half-way through the lost coordinator's round (some wired into
             * its epoch, some not): everyone re-wires into a fresh one */
            c->broken = true;
        }
        coord_reconf_check(c);
    }
}

/* ---- timers --------------------------------------------------------------------------------- */

/* The operation's deadline passed: find who holds it up, evict them, abort it. */
static void straggler_abort(loco_coord *c, uint64_t now)
{
    double d = coord_deadline_s(c);
    uint64_t seq = c->op_seq;
    uint64_t stale = ns(2.0 * c->cfg.heartbeat_s + 0.05);
    int evict[LOCO_MAX_WORLD > 64 ? 64 : LOCO_MAX_WORLD];
    int ne = 0;
    char why[LOCO_REASON_MAX + 1];
    size_t n = (size_t)snprintf(why, sizeof why, "operation %llu not finished %.2f s after it "
                                                "began:",
                                (unsigned long long)seq, d);
    for (int r = 0; r < c->world && ne < 64; r++) {
        const coord_member *m = &c->mem[c->ranks[r]];
        if (CM_MEMBER != m->state || m->result_seq == seq) {
            continue;
        }
        const char *cause = m->begun_seq < seq            ? "never started it"
                            : now > m->last_heard_ns + stale ? "went silent"
                                                             : NULL;
        if (NULL != cause) {
            evict[ne++] = c->ranks[r];
            n += (size_t)snprintf(why + n, n < sizeof why ? sizeof why - n : 0, " rank %d %s;", r,
                                  cause);
        }
    }
    for (int r = 0; r < c->world && 0 == ne; r++) { /* a pair waiting on each other: frozen link */
        const coord_member *a = &c->mem[c->ranks[r]];
        int w = a->progress.waiting_on;
        if (w < 0 || w >= c->world || w == r) {
            continue;
        }
        const coord_member *b = &c->mem[c->ranks[w]];
        if (b->progress.waiting_on == r) {
            int victim = a->m.id > b->m.id ? c->ranks[r] : c->ranks[w];
            evict[ne++] = victim;
            n += (size_t)snprintf(why + n, n < sizeof why ? sizeof why - n : 0,
                                  " ranks %d and %d wait on each other (a frozen link); evicting "
                                  "rank %d",
                                  r, w, coord_rank_of(c, victim));
        }
    }
    if (0 == ne) {
        n += (size_t)snprintf(why + n, n < sizeof why ? sizeof why - n : 0,
                              " no member to blame; re-forming the group");
        coord_abort_op(c, seq, -1, LOCO_ERR_PEER_LOST, why, -1);
        return;
    }
    coord_abort_op(c, seq, coord_rank_of(c, evict[0]), LOCO_ERR_PEER_LOST, why, evict[0]);
    for (int k = 0; k < ne; k++) {
        coord_member_gone(c, evict[k], CM_EVICTED, why);
    }
}

void coord_tick(loco_coord *c, uint64_t now)
{
    if (c->takeover) {
        if (now >= c->takeover_deadline_ns) {
            takeover_finish(c);
        }
        return;
    }
    double d = coord_deadline_s(c);
    if (!c->reconf && c->op_seq > c->decided_seq && now > c->op_t0 + ns(d)) {
        straggler_abort(c, now);
        return;
    }
    if (c->reconf && !c->executing && now > c->reconf_t0 + ns(d)) {
        for (int r = 0; r < c->world; r++) {
            int i = c->ranks[r];
            if (CM_MEMBER == c->mem[i].state && !c->mem[i].has_req) {
                char why[160];
                snprintf(why, sizeof why, "did not reach %s within %.2f s",
                         LOCO_RECONF_SYNC == c->reconf_kind ? "the sync point" : "recovery", d);
                coord_member_gone(c, i, CM_EVICTED, why);
                if (!c->reconf || c->executing) {
                    return;
                }
            }
        }
        coord_reconf_check(c);
        return;
    }
    double round_s = d + c->cfg.connect_timeout_s;
    if (c->reconf && c->executing && now > c->reconf_t0 + ns(round_s)) {
        for (int k = 0; k < c->plan.n; k++) {
            int i = coord_find_member(c, c->plan.members[k].id);
            if (i >= 0 && !c->mem[i].done) {
                char why[160];
                snprintf(why, sizeof why, "did not complete round %u within %.2f s", c->round,
                         round_s);
                coord_member_gone(c, i, CM_EVICTED, why);
                return;
            }
        }
    }
}

uint64_t coord_next_deadline(const loco_coord *c)
{
    if (c->takeover) {
        return c->takeover_deadline_ns;
    }
    double d = coord_deadline_s(c);
    if (!c->reconf && c->op_seq > c->decided_seq) {
        return c->op_t0 + ns(d) + 1;
    }
    if (c->reconf) {
        return c->reconf_t0 + ns(c->executing ? d + c->cfg.connect_timeout_s : d) + 1;
    }
    return UINT64_MAX;
}
