/* collectives/coord_plan.c — the coordinator's decisions on verdicts and reconfigurations, made
 * on its thread from the state in coord_impl.h (deadlines, stragglers and takeover:
 * coord_time.c):
 *
 *   verdicts      an operation is COMMITTED once every member of the epoch reported success
 *                 with the same result digest; ABORTED when one failed or was lost first, when
 *                 digests differ, or when its deadline passed. Every member gets the same one.
 *   reconfigure   after an abort (recover) or at a sync point: collect every member's request
 *                 (late ones are evicted), then plan a round: the next epoch (survivors, minus
 *                 leavers, plus joiners), the majority's state digests, who sends state to whom.
 *                 Rounds repeat while members fail meanwhile; COMMIT when all report success.
 */
#include "collectives/coord_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- verdicts ------------------------------------------------------------------------------- */

static bool in_epoch(const loco_coord *c, int i)
{
    return CM_MEMBER == c->mem[i].state && coord_rank_of(c, i) >= 0;
}

void coord_send_verdict(loco_coord *c, uint64_t seq, loco_verdict_kind v, int blame,
                         int32_t status, const char *reason, int extra)
{
    loco_msg_outcome o = {.status = status, .blame = blame, .verdict = v};
    loco_copy_str(o.reason, sizeof o.reason, NULL == reason ? "" : reason);
    uint8_t buf[32 + LOCO_REASON_MAX];
    uint32_t len = (uint32_t)loco_msg_outcome_encode(&o, buf);
    for (int r = 0; r < c->world; r++) {
        if (CM_MEMBER == c->mem[c->ranks[r]].state) {
            coord_send(c, c->ranks[r], LOCO_FRAME_VERDICT, c->epoch, seq, buf, len);
        }
    }
    if (extra >= 0 && coord_rank_of(c, extra) < 0) {
        coord_send(c, extra, LOCO_FRAME_VERDICT, c->epoch, seq, buf, len);
    }
}

/* Abort operation seq for everyone (extra: an evicted member that should hear it too). */
void coord_abort_op(loco_coord *c, uint64_t seq, int blame, int32_t status, const char *reason,
                     int extra)
{
    if (seq <= c->decided_seq) {
        return;
    }
    c->decided_seq = seq;
    c->op_seq = seq > c->op_seq ? seq : c->op_seq;
    c->ops_aborted++;
    c->broken = true;
    coord_send_verdict(c, seq, LOCO_VERDICT_ABORTED, blame, status, reason, extra);
    LOCO_WARN("coordinator: epoch %u operation %llu ABORTED: %s", c->epoch,
              (unsigned long long)seq, reason);
    coord_event(c, "abort", "\"seq\": %llu, \"blame\": %d", (unsigned long long)seq, blame);
    if (!c->reconf) { /* the members will ask to recover */
        c->reconf = true;
        c->executing = false;
        c->reconf_kind = LOCO_RECONF_RECOVER;
        c->reconf_t0 = loco_now_ns();
        c->reconf_rounds = 0;
    }
}

static void commit_op(loco_coord *c, uint64_t seq)
{
    c->decided_seq = seq;
    c->ops_committed++;
    double took = (double)(loco_now_ns() - c->op_t0) * 1e-9;
    c->recent[c->recent_head] = took;
    c->recent_head = (c->recent_head + 1) % COORD_RECENT_MAX;
    c->nrecent += c->nrecent < COORD_RECENT_MAX;
    coord_send_verdict(c, seq, LOCO_VERDICT_COMMITTED, -1, 0, NULL, -1);
    coord_event(c, "commit", "\"seq\": %llu, \"seconds\": %.6f", (unsigned long long)seq, took);
}

void coord_on_begin(loco_coord *c, int i, uint32_t epoch, uint64_t seq)
{
    if (epoch != c->epoch || c->takeover || !in_epoch(c, i) || seq <= c->decided_seq) {
        return;
    }
    coord_member *m = &c->mem[i];
    m->begun_seq = seq > m->begun_seq ? seq : m->begun_seq;
    if (seq > c->op_seq) {
        c->op_seq = seq;
        c->op_t0 = loco_now_ns();
        coord_event(c, "begin", "\"seq\": %llu, \"id\": %u", (unsigned long long)seq, m->m.id);
    }
}

void coord_on_result(loco_coord *c, int i, uint32_t epoch, uint64_t seq, const loco_msg_outcome *r)
{
    coord_member *m = &c->mem[i];
    if (epoch != c->epoch || !in_epoch(c, i)) {
        return;
    }
    if (c->takeover) { /* it finished after registering: count it as its pending report */
        if (LOCO_OK == r->status && seq > m->reg_pend_seq) {
            m->reg_pend_seq = seq;
            m->reg_pend_digest = r->digest;
        }
        return;
    }
    if (seq <= c->decided_seq || c->reconf) {
        return;
    }
    if (seq > c->op_seq) {
        c->op_seq = seq;
        c->op_t0 = loco_now_ns();
    }
    m->begun_seq = seq > m->begun_seq ? seq : m->begun_seq;
    m->result_seq = seq;
    m->result_status = r->status;
    m->result_digest = r->digest;
    coord_event(c, "result", "\"seq\": %llu, \"id\": %u, \"status\": %d",
                (unsigned long long)seq, m->m.id, r->status);
    int rank = coord_rank_of(c, i);
    if (LOCO_OK != r->status) {
        char why[LOCO_REASON_MAX + 64];
        snprintf(why, sizeof why, "rank %d: %s", rank, r->reason);
        coord_abort_op(c, seq, r->blame, LOCO_ERR_PEER_LOST, why, -1);
        return;
    }
    for (int k = 0; k < c->world; k++) {
        const coord_member *o = &c->mem[c->ranks[k]];
        if (o->result_seq != seq || LOCO_OK != o->result_status) {
            return; /* wait for everyone */
        }
    }
    for (int k = 1; k < c->world; k++) {
        const coord_member *o = &c->mem[c->ranks[k]];
        if (o->result_digest != c->mem[c->ranks[0]].result_digest) {
            char why[256];
            snprintf(why, sizeof why, "results diverged: rank %d's digest %016llx differs from "
                                      "rank 0's %016llx",
                     k, (unsigned long long)o->result_digest,
                     (unsigned long long)c->mem[c->ranks[0]].result_digest);
            coord_abort_op(c, seq, -1, LOCO_ERR_CHECKSUM, why, -1);
            return;
        }
    }
    commit_op(c, seq);
}

/* ---- members leaving the epoch -------------------------------------------------------------- */

static void plan_round(loco_coord *c);

/* Tell a removed member it is out (a plan without it). */
static void send_notice(loco_coord *c, int i, const char *reason)
{
    loco_plan p = {.epoch = c->epoch, .kind = LOCO_RECONF_RECOVER, .flags = LOCO_PLAN_ERROR,
                   .counts = c->counts};
    loco_copy_str(p.note, sizeof p.note, reason);
    uint8_t buf[512];
    size_t len = loco_plan_encode(&p, buf, sizeof buf);
    coord_send(c, i, LOCO_FRAME_PLAN, c->epoch, 0, buf, (uint32_t)len);
}

void coord_member_gone(loco_coord *c, int i, cm_state state, const char *reason)
{
    coord_member *m = &c->mem[i];
    cm_state prev = m->state;
    if (CM_MEMBER != prev && CM_PENDING != prev) {
        return;
    }
    m->state = state;
    int rank = coord_rank_of(c, i);
    bool was_member = CM_MEMBER == prev && !m->joining;
    if (m->joining) { /* it never completed its admission */
        c->counts.joined--;
    }
    m->joining = false;
    if (was_member && CM_DEAD == state) {
        c->counts.died++;
    } else if (was_member && CM_EVICTED == state) {
        c->counts.evicted++;
    }
    const char *what = CM_DEAD == state ? "died" : CM_EVICTED == state ? "evicted"
                       : CM_FINISHED == state ? "finished" : "removed";
    if (CM_FINISHED == state) {
        LOCO_INFO("coordinator: member %u (rank %d) finished", m->m.id, rank);
    } else {
        LOCO_WARN("coordinator: member %u (rank %d of epoch %u) %s: %s", m->m.id, rank, c->epoch,
                  what, reason);
    }
    coord_event(c, what, "\"id\": %u, \"rank\": %d", m->m.id, rank);
    if (CM_EVICTED == state || CM_REFUSED == state) {
        char note[LOCO_REASON_MAX + 1];
        snprintf(note, sizeof note, "rank %d (member %u) evicted: %s", rank, m->m.id, reason);
        if (!c->reconf && was_member && rank >= 0) {
            coord_abort_op(c, c->op_seq > c->decided_seq ? c->op_seq : c->decided_seq + 1, rank,
                     LOCO_ERR_PEER_LOST, note, i);
        }
        send_notice(c, i, note);
    }
    if (c->takeover || rank < 0) {
        return; /* not in the epoch (a waiting joiner), or settled when the takeover completes */
    }
    if (!c->reconf) {
        char why[300];
        snprintf(why, sizeof why, "member %u (rank %d) %s: %s", m->m.id, rank, what, reason);
        bool open = c->op_seq > c->decided_seq;
        if (CM_FINISHED == state && !open) {
            c->broken = true; /* the end of its run: a later operation fails on its own */
            return;
        }
        coord_abort_op(c, open ? c->op_seq : c->decided_seq + 1, rank, LOCO_ERR_PEER_LOST, why, -1);
        return;
    }
    if (c->executing) {
        plan_round(c); /* a participant of the running round is gone: plan again without it */
        return;
    }
    coord_reconf_check(c);
}

/* ---- reconfiguration ------------------------------------------------------------------------ */

void coord_start_reconf(loco_coord *c, uint32_t kind)
{
    if (c->reconf) {
        return;
    }
    c->reconf = true;
    c->executing = false;
    c->reconf_kind = kind;
    c->reconf_t0 = loco_now_ns();
    c->reconf_rounds = 0;
    if (LOCO_RECONF_RECOVER == kind && c->op_seq <= c->decided_seq) {
        /* members computing between operations must not start the next one in this epoch */
        uint64_t next = c->decided_seq + 1;
        c->decided_seq = next;
        c->op_seq = next;
        c->broken = true;
        coord_send_verdict(c, next, LOCO_VERDICT_ABORTED, -1, LOCO_ERR_PEER_LOST,
                     "the group is re-forming: call loco_comm_recover", -1);
    }
}

void coord_on_reconf(loco_coord *c, int i, uint32_t epoch, loco_msg_reconf *req)
{
    coord_member *m = &c->mem[i];
    (void)epoch;
    if (CM_MEMBER != m->state && CM_PENDING != m->state) {
        send_notice(c, i, "not a member any more");
        loco_msg_reconf_free(req);
        return;
    }
    if (CM_PENDING == m->state && (LOCO_RECONF_SYNC != req->kind ||
                                   0 == (req->flags & LOCO_RECONF_JOINER))) {
        loco_msg_reconf_free(req);
        coord_member_gone(c, i, CM_REFUSED, "a joiner must call loco_comm_sync_point");
        return;
    }
    loco_msg_reconf_free(&m->req);
    m->req = *req;
    m->has_req = true;
    memset(req, 0, sizeof *req);
    if (c->takeover) {
        return; /* settled when the takeover completes */
    }
    if (CM_PENDING == m->state) {
        return; /* a joiner waits for the members' sync point */
    }
    if (!c->reconf) {
        if (c->op_seq > c->decided_seq) {
            char why[128];
            snprintf(why, sizeof why, "rank %d asked to %s", coord_rank_of(c, i),
                     LOCO_RECONF_SYNC == m->req.kind ? "sync" : "recover");
            coord_abort_op(c, c->op_seq, coord_rank_of(c, i), LOCO_ERR_PEER_LOST, why, -1);
            c->reconf_kind = m->req.kind;
        } else {
            coord_start_reconf(c, m->req.kind);
        }
    }
    if (c->reconf_kind != m->req.kind && !c->executing) {
        bool others_sync = false;
        for (int r = 0; r < c->world; r++) {
            const coord_member *o = &c->mem[c->ranks[r]];
            others_sync = others_sync || (o->has_req && c->ranks[r] != i &&
                                          o->req.kind != m->req.kind);
        }
        if (!others_sync) {
            c->reconf_kind = m->req.kind; /* the first request decides, unless others differ */
        } else {
            m->has_req = false;
            coord_member_gone(c, i, CM_EVICTED,
                              "called loco_comm_recover while the group is at a sync point (or "
                              "the other way round): the members' call sequences differ");
            return;
        }
    }
    coord_reconf_check(c);
}

/* Collecting: plan once every member of the epoch asked. Executing: commit once every
 * participant reported success. */
void coord_reconf_check(loco_coord *c)
{
    if (!c->reconf || c->takeover) {
        return;
    }
    if (!c->executing) {
        for (int r = 0; r < c->world; r++) {
            const coord_member *m = &c->mem[c->ranks[r]];
            if (CM_MEMBER == m->state && !m->has_req) {
                return;
            }
        }
        plan_round(c);
        return;
    }
    for (int r = 0; r < c->plan.n; r++) {
        int i = coord_find_member(c, c->plan.members[r].id);
        if (i < 0 || !c->mem[i].done) {
            return;
        }
    }
    uint8_t buf[16];
    uint32_t len = (uint32_t)loco_msg_round_encode(c->round, 0, "", buf);
    for (int r = 0; r < c->plan.n; r++) {
        coord_send(c, coord_find_member(c, c->plan.members[r].id), LOCO_FRAME_COMMIT, c->epoch, 0,
                   buf, len);
    }
    for (int i = 0; i < c->nmem; i++) {
        c->mem[i].joining = false;
    }
    coord_event(c, "committed_round", "\"round\": %u, \"world\": %d", c->round, c->world);
    LOCO_INFO("coordinator: epoch %u formed with %d members (round %u)", c->epoch, c->world,
              c->round);
    for (int i = 0; i < c->nmem; i++) {
        c->mem[i].done = false;
        if (CM_PENDING == c->mem[i].state) {
            continue; /* a joiner that asked after the plan: its request waits for the next */
        }
        c->mem[i].has_req = false;
        loco_msg_reconf_free(&c->mem[i].req);
    }
    c->reconf = c->executing = false;
    c->broken = false;
    c->plan_new_members = 0;
    c->reconfigs++;
}

void coord_on_plan_done(loco_coord *c, int i, uint32_t round, int32_t status, const char *reason)
{
    if (!c->executing || round != c->round) {
        return;
    }
    coord_member *m = &c->mem[i];
    m->done = true;
    m->done_status = status;
    if (LOCO_OK != status) {
        LOCO_WARN("coordinator: member %u could not complete round %u: %s (planning again)",
                  m->m.id, round, reason);
        plan_round(c);
        return;
    }
    coord_reconf_check(c);
}

/* Do two requests describe the same state layout (names and sizes)? */
static bool same_layout(const loco_msg_reconf *a, const loco_msg_reconf *b)
{
    if (a->nbuf != b->nbuf) {
        return false;
    }
    for (int k = 0; k < a->nbuf; k++) {
        if (a->bufs[k].bytes != b->bufs[k].bytes || 0 != strcmp(a->bufs[k].name, b->bufs[k].name)) {
            return false;
        }
    }
    return true;
}

static bool same_digests(const loco_msg_reconf *a, const loco_msg_reconf *b)
{
    for (int k = 0; k < a->nbuf; k++) {
        if (a->bufs[k].digest != b->bufs[k].digest) {
            return false;
        }
    }
    return true;
}

/* The member (index) whose layout / digests most members share; ties go to the lowest rank. */
static int majority(const loco_coord *c, const int *cand, int n, bool digests)
{
    int best = -1, best_votes = 0;
    for (int a = 0; a < n; a++) {
        int votes = 0;
        for (int b = 0; b < n; b++) {
            const loco_msg_reconf *x = &c->mem[cand[a]].req, *y = &c->mem[cand[b]].req;
            votes += same_layout(x, y) && (!digests || same_digests(x, y));
        }
        if (votes > best_votes) {
            best = cand[a];
            best_votes = votes;
        }
    }
    return best;
}

/* Plan the next round from the requests: who is in, what state moves where. */
static void plan_round(loco_coord *c)
{
    loco_plan_free(&c->plan);
    loco_plan *p = &c->plan;
    memset(p, 0, sizeof *p);
    c->round++;
    c->reconf_rounds++;
    c->executing = false; /* removals below re-plan from scratch, not from a half-made plan */
    bool sync = LOCO_RECONF_SYNC == c->reconf_kind;
    int *stay = calloc((size_t)c->nmem + 1, sizeof *stay);
    int *old = calloc((size_t)c->nmem + 1, sizeof *old);
    p->members = calloc((size_t)c->nmem + 1, sizeof *p->members);
    p->senders = calloc((size_t)c->nmem + 1, sizeof *p->senders);
    p->receivers = calloc((size_t)c->nmem + 1, sizeof *p->receivers);
    p->masks = calloc((size_t)c->nmem + 1, LOCO_STATE_MASK_BYTES);
    if (NULL == stay || NULL == old || NULL == p->members || NULL == p->senders ||
        NULL == p->receivers || NULL == p->masks) {
        free(stay);
        free(old);
        return;
    }
    int nold = 0, nstay = 0;
    for (int r = 0; r < c->world; r++) { /* members of the epoch that asked, in rank order */
        int i = c->ranks[r];
        if (CM_MEMBER == c->mem[i].state && c->mem[i].has_req) {
            old[nold++] = i;
        }
    }
    char note[LOCO_REASON_MAX + 1] = "";
    size_t nl = 0;
    bool broken = LOCO_RECONF_RECOVER == c->reconf_kind || c->reconf_rounds > 1 || c->broken;
    int ref = -1;
    if (sync && nold > 0) {
        ref = majority(c, old, nold, false); /* the layout most members have */
        for (int k = 0; k < nold; k++) {
            if (!same_layout(&c->mem[old[k]].req, &c->mem[ref].req)) {
                c->mem[old[k]].has_req = false;
                coord_member_gone(c, old[k], CM_EVICTED, "its state layout (buffer names and "
                                                         "sizes) differs from the group's");
                free(stay);
                free(old);
                return; /* coord_member_gone planned again */
            }
        }
        ref = majority(c, old, nold, true);
    }
    /* leavers go (unless nobody with the majority's state would stay to hand it on) */
    int senders_left = 0;
    for (int k = 0; k < nold; k++) {
        const coord_member *m = &c->mem[old[k]];
        bool leave = sync && (m->req.flags & LOCO_RECONF_LEAVE);
        broken = broken || (m->req.flags & LOCO_RECONF_BROKEN);
        senders_left += !leave && (ref < 0 || same_digests(&m->req, &c->mem[ref].req));
    }
    for (int k = 0; k < nold; k++) {
        coord_member *m = &c->mem[old[k]];
        if (sync && (m->req.flags & LOCO_RECONF_LEAVE) && senders_left > 0) {
            m->state = CM_LEFT;
            c->counts.left++;
            p->n_left++;
            nl += (size_t)snprintf(note + nl, sizeof note - nl, "%sleft: %u", nl ? "; " : "",
                                   m->m.id);
            coord_event(c, "left", "\"id\": %u", m->m.id);
            nl = nl < sizeof note ? nl : sizeof note - 1;
        } else {
            stay[nstay++] = old[k];
        }
    }
    c->plan_new_members = 0;
    if (sync && ref >= 0) { /* joiners with the group's layout come in */
        for (int i = 0; i < c->nmem; i++) {
            coord_member *m = &c->mem[i];
            if (CM_PENDING != m->state || !m->has_req) {
                continue;
            }
            if (!same_layout(&m->req, &c->mem[ref].req)) {
                m->has_req = false;
                coord_member_gone(c, i, CM_REFUSED, "its state layout (buffer names and sizes) "
                                                    "differs from the group's");
                continue;
            }
            stay[nstay++] = i;
            c->plan_new_members++;
            c->counts.joined += !m->joining; /* counted once, taken back if it fails */
            m->joining = true;
        }
    }
    p->n_joined = c->plan_new_members;
    for (int r = 0; r < c->world; r++) { /* members of the epoch lost before this round */
        cm_state st = c->mem[c->ranks[r]].state;
        p->n_removed += CM_DEAD == st || CM_EVICTED == st || CM_FINISHED == st;
    }
    bool changed = nstay != c->world;
    for (int k = 0; k < nstay && !changed; k++) {
        changed = c->ranks[k] != stay[k];
    }
    bool new_epoch = broken || changed;
    for (int k = 0; k < nstay; k++) {
        p->members[k] = c->mem[stay[k]].m;
    }
    p->n = nstay;
    p->kind = c->reconf_kind;
    p->round = c->round;
    p->streams = (uint32_t)(c->cfg.ft.transfer_streams > 0 ? c->cfg.ft.transfer_streams
                                                          : c->cfg.streams);
    if (sync && ref >= 0) { /* parity: the majority's digests; everyone else receives */
        const loco_msg_reconf *maj = &c->mem[ref].req;
        p->nbuf = maj->nbuf;
        p->digests = calloc((size_t)p->nbuf + 1, sizeof *p->digests);
        p->bytes = calloc((size_t)p->nbuf + 1, sizeof *p->bytes);
        if (NULL == p->digests || NULL == p->bytes) {
            free(stay);
            free(old);
            return;
        }
        p->step = maj->step;
        for (int b = 0; b < p->nbuf; b++) {
            p->digests[b] = maj->bufs[b].digest;
            p->bytes[b] = maj->bufs[b].bytes;
        }
        for (int k = 0; k < nstay; k++) {
            const coord_member *m = &c->mem[stay[k]];
            bool joiner = CM_PENDING == m->state || (m->req.flags & LOCO_RECONF_JOINER);
            if (!joiner && same_digests(&m->req, maj)) {
                p->senders[p->n_send++] = m->m.id;
                continue;
            }
            if (!joiner && !c->cfg.ft.parity) {
                continue;
            }
            uint8_t *mask = p->masks + (size_t)p->n_recv * LOCO_STATE_MASK_BYTES;
            for (int b = 0; b < p->nbuf; b++) {
                if (p->bytes[b] > 0 && (joiner || m->req.bufs[b].digest != maj->bufs[b].digest)) {
                    mask[b / 8] |= (uint8_t)(1u << (b % 8));
                }
            }
            p->receivers[p->n_recv++] = m->m.id;
            if (!joiner) {
                p->n_repaired++;
                nl += (size_t)snprintf(note + nl, sizeof note - nl, "%srepaired: %u",
                                       nl ? "; " : "", m->m.id);
                nl = nl < sizeof note ? nl : sizeof note - 1;
                coord_event(c, "repair", "\"id\": %u", m->m.id);
            } else {
                nl += (size_t)snprintf(note + nl, sizeof note - nl, "%sjoined: %u", nl ? "; " : "",
                                       m->m.id);
                nl = nl < sizeof note ? nl : sizeof note - 1;
            }
        }
        if (0 == p->n_send) {
            p->n_recv = 0; /* nobody holds the majority's state any more: nothing to hand on */
        }
    } else {
        p->step = c->step;
    }
    loco_copy_str(p->note, sizeof p->note, note);
    if (new_epoch) {
        c->epoch++;
        p->flags |= LOCO_PLAN_NEW_EPOCH;
    }
    for (int k = 0; k < nstay; k++) {
        c->mem[stay[k]].state = CM_MEMBER;
        c->mem[stay[k]].done = false;
    }
    coord_set_table(c, c->epoch, p->members, p->n);
    p->epoch = c->epoch;
    p->counts = c->counts;
    c->step = p->step;
    c->executing = true;
    c->reconf_t0 = loco_now_ns(); /* the round's own deadline */
    size_t cap = 4096 + (size_t)p->n * (LOCO_MEMBER_BYTES + 4 + LOCO_STATE_MASK_BYTES) +
                 (size_t)p->nbuf * 16;
    uint8_t *buf = malloc(cap);
    size_t len = NULL == buf ? 0 : loco_plan_encode(p, buf, cap);
    for (int k = 0; k < nold && len > 0; k++) { /* leavers hear it too: they are not in it */
        if (CM_LEFT == c->mem[old[k]].state) {
            coord_send(c, old[k], LOCO_FRAME_PLAN, c->epoch, 0, buf, (uint32_t)len);
        }
    }
    for (int k = 0; k < nstay && len > 0; k++) {
        coord_send(c, stay[k], LOCO_FRAME_PLAN, c->epoch, 0, buf, (uint32_t)len);
    }
    coord_event(c, "plan", "\"round\": %u, \"kind\": %u, \"world\": %d, \"new_epoch\": %s, "
                           "\"senders\": %d, \"receivers\": %d",
                c->round, p->kind, p->n, new_epoch ? "true" : "false", p->n_send, p->n_recv);
    free(buf);
    free(stay);
    free(old);
    if (!new_epoch && 0 == p->n_recv) { /* nothing to execute: members return at once */
        for (int i = 0; i < c->nmem; i++) {
            if (CM_PENDING == c->mem[i].state) {
                continue; /* a joiner not admitted by this round keeps its request */
            }
            c->mem[i].has_req = false;
            loco_msg_reconf_free(&c->mem[i].req);
        }
        c->reconf = c->executing = false;
        c->reconfigs++;
    }
}

