/* collectives/ctlmsg.c — the control plane's messages (ft_impl.h): encoders and hostile-safe
 * decoders, pure functions with no I/O (the fuzz target's surface).
 *
 * A message is a sequence of little-endian fields written by a bounds-checked writer and read by
 * a reader that remembers the first overrun: a decoder reads everything, then fails once if the
 * input was short, long, or a count or string was out of range. Counts are checked against the
 * bytes left before anything is allocated, so a hostile length cannot make us allocate much.
 */
#include "collectives/ft_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writer / reader ------------------------------------------------------------------------ */

typedef struct wr {
    uint8_t *p;
    size_t cap, len;
    bool overflow;
} wr;

static void w_bytes(wr *w, const void *src, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void w_u32(wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    w_bytes(w, b, 4);
}

static void w_u64(wr *w, uint64_t v)
{
    w_u32(w, (uint32_t)v);
    w_u32(w, (uint32_t)(v >> 32));
}

static void w_text(wr *w, const char *s, size_t max)
{
    size_t n = NULL == s ? 0 : strnlen(s, max);
    w_u32(w, (uint32_t)n);
    w_bytes(w, s, n);
}

static void w_member(wr *w, const loco_member *m)
{
    uint8_t b[LOCO_MEMBER_BYTES];
    loco_member_encode(m, b);
    w_bytes(w, b, sizeof b);
}

typedef struct rd {
    const uint8_t *p;
    size_t len, off;
    bool bad;
    char why[128];
} rd;

static void r_fail(rd *r, const char *why)
{
    if (!r->bad) {
        r->bad = true;
        snprintf(r->why, sizeof r->why, "%.120s", why);
    }
}

static const uint8_t *r_take(rd *r, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r_fail(r, "message is truncated");
        return NULL;
    }
    const uint8_t *q = r->p + r->off;
    r->off += n;
    return q;
}

static uint32_t r_u32(rd *r)
{
    const uint8_t *b = r_take(r, 4);
    return NULL == b ? 0
                     : (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
                           ((uint32_t)b[3] << 24);
}

static uint64_t r_u64(rd *r)
{
    uint64_t lo = r_u32(r);
    return lo | ((uint64_t)r_u32(r) << 32);
}

/* A count of items of `item_bytes` each, checked against what is left (and max). */
static int r_count(rd *r, size_t item_bytes, int max)
{
    uint32_t n = r_u32(r);
    if (r->bad) {
        return 0;
    }
    if (n > (uint32_t)max || (item_bytes > 0 && n > (r->len - r->off) / item_bytes)) {
        r_fail(r, "a count exceeds the message or its limit");
        return 0;
    }
    return (int)n;
}

static void r_text(rd *r, char *out, size_t cap)
{
    uint32_t n = r_u32(r);
    out[0] = '\0';
    if (n >= cap) {
        r_fail(r, "a text field is too long");
        return;
    }
    const uint8_t *b = r_take(r, n);
    if (NULL != b) {
        loco_sanitize_text(b, n, out, cap);
    }
}

static void r_member(rd *r, loco_member *m, const char *what)
{
    const uint8_t *b = r_take(r, LOCO_MEMBER_BYTES);
    loco_error e = {0};
    if (NULL != b && LOCO_OK != loco_member_decode(b, m, what, &e)) {
        r_fail(r, e.msg);
    }
}

static loco_status r_finish(rd *r, const char *what, loco_error *err)
{
    if (!r->bad && r->off != r->len) {
        r_fail(r, "trailing bytes");
    }
    if (r->bad) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "%s: %s", what, r->why);
    }
    return LOCO_OK;
}

static size_t w_done(const wr *w) { return w->overflow ? 0 : w->len; }

static void w_counts(wr *w, const loco_membership_counts *c)
{
    w_u32(w, c->started);
    w_u32(w, c->died);
    w_u32(w, c->evicted);
    w_u32(w, c->joined);
    w_u32(w, c->left);
}

static void r_counts(rd *r, loco_membership_counts *c)
{
    c->started = r_u32(r);
    c->died = r_u32(r);
    c->evicted = r_u32(r);
    c->joined = r_u32(r);
    c->left = r_u32(r);
}

/* ---- REGISTER ------------------------------------------------------------------------------- */

size_t loco_msg_register_encode(const loco_msg_register *m, uint8_t *out, size_t cap)
{
    wr w = {.p = out, .cap = cap};
    w_u32(&w, m->id);
    w_u32(&w, m->flags);
    w_u32(&w, m->epoch);
    w_u64(&w, m->step);
    w_u64(&w, m->done_seq);
    w_u32(&w, m->done_verdict);
    w_u64(&w, m->pend_seq);
    w_u64(&w, m->pend_digest);
    w_u32(&w, m->coord_id);
    w_counts(&w, &m->counts);
    w_member(&w, &m->self);
    w_u32(&w, (uint32_t)m->n);
    for (int i = 0; i < m->n; i++) {
        w_member(&w, &m->table[i]);
    }
    return w_done(&w);
}

loco_status loco_msg_register_decode(const uint8_t *in, size_t len, loco_msg_register *m,
                                     loco_error *err)
{
    memset(m, 0, sizeof *m);
    rd r = {.p = in, .len = len};
    m->id = r_u32(&r);
    m->flags = r_u32(&r);
    m->epoch = r_u32(&r);
    m->step = r_u64(&r);
    m->done_seq = r_u64(&r);
    m->done_verdict = r_u32(&r);
    m->pend_seq = r_u64(&r);
    m->pend_digest = r_u64(&r);
    m->coord_id = r_u32(&r);
    r_counts(&r, &m->counts);
    r_member(&r, &m->self, "REGISTER");
    m->n = r_count(&r, LOCO_MEMBER_BYTES, LOCO_MAX_WORLD);
    if (m->n > 0) {
        m->table = calloc((size_t)m->n, sizeof *m->table);
        if (NULL == m->table) {
            return LOCO_ERR_NOMEM;
        }
    }
    for (int i = 0; i < m->n && !r.bad; i++) {
        r_member(&r, &m->table[i], "REGISTER table");
    }
    if (m->done_verdict > LOCO_VERDICT_ABORTED) {
        r_fail(&r, "unknown verdict kind");
    }
    loco_status st = r_finish(&r, "REGISTER", err);
    if (LOCO_OK != st) {
        loco_msg_register_free(m);
    }
    return st;
}

void loco_msg_register_free(loco_msg_register *m)
{
    free(m->table);
    m->table = NULL;
    m->n = 0;
}

/* ---- WELCOME, RESULT/VERDICT, PING progress --------------------------------------------------- */

size_t loco_msg_welcome_encode(const loco_msg_welcome *m, uint8_t *out)
{
    wr w = {.p = out, .cap = 12};
    w_u32(&w, m->id);
    w_u32(&w, m->epoch);
    w_u32(&w, m->status);
    return w_done(&w);
}

loco_status loco_msg_welcome_decode(const uint8_t *in, size_t len, loco_msg_welcome *m,
                                    loco_error *err)
{
    rd r = {.p = in, .len = len};
    m->id = r_u32(&r);
    m->epoch = r_u32(&r);
    m->status = r_u32(&r);
    if (m->status > 2) {
        r_fail(&r, "unknown status");
    }
    return r_finish(&r, "WELCOME", err);
}

size_t loco_msg_outcome_encode(const loco_msg_outcome *m, uint8_t *out)
{
    wr w = {.p = out, .cap = 24 + LOCO_REASON_MAX};
    w_u32(&w, (uint32_t)m->status);
    w_u32(&w, (uint32_t)m->blame);
    w_u32(&w, m->verdict);
    w_u64(&w, m->digest);
    w_text(&w, m->reason, LOCO_REASON_MAX);
    return w_done(&w);
}

loco_status loco_msg_outcome_decode(const uint8_t *in, size_t len, loco_msg_outcome *m,
                                    loco_error *err)
{
    rd r = {.p = in, .len = len};
    m->status = (int32_t)r_u32(&r);
    m->blame = (int32_t)r_u32(&r);
    m->verdict = r_u32(&r);
    m->digest = r_u64(&r);
    r_text(&r, m->reason, sizeof m->reason);
    if (m->status > 0 || m->status < -100 || m->blame < -1 || m->blame >= LOCO_MAX_WORLD ||
        m->verdict > LOCO_VERDICT_ABORTED) {
        r_fail(&r, "a field is out of range");
    }
    return r_finish(&r, "RESULT/VERDICT", err);
}

size_t loco_msg_progress_encode(const loco_msg_progress *m, uint8_t *out)
{
    wr w = {.p = out, .cap = 12};
    w_u32(&w, m->flags);
    w_u32(&w, (uint32_t)m->waiting_on);
    w_u32(&w, m->idle_ms);
    return w_done(&w);
}

loco_status loco_msg_progress_decode(const uint8_t *in, size_t len, loco_msg_progress *m,
                                     loco_error *err)
{
    rd r = {.p = in, .len = len};
    m->flags = r_u32(&r);
    m->waiting_on = (int32_t)r_u32(&r);
    m->idle_ms = r_u32(&r);
    if (m->waiting_on < -1 || m->waiting_on >= LOCO_MAX_WORLD) {
        r_fail(&r, "waiting_on is out of range");
    }
    return r_finish(&r, "PING", err);
}

/* ---- RECONF --------------------------------------------------------------------------------- */

size_t loco_msg_reconf_encode(const loco_msg_reconf *m, uint8_t *out, size_t cap)
{
    wr w = {.p = out, .cap = cap};
    w_u32(&w, m->kind);
    w_u32(&w, m->flags);
    w_u64(&w, m->step);
    w_u32(&w, (uint32_t)m->nbuf);
    for (int i = 0; i < m->nbuf; i++) {
        w_u64(&w, m->bufs[i].bytes);
        w_u64(&w, m->bufs[i].digest);
        w_text(&w, m->bufs[i].name, LOCO_STATE_NAME_MAX);
    }
    return w_done(&w);
}

loco_status loco_msg_reconf_decode(const uint8_t *in, size_t len, loco_msg_reconf *m,
                                   loco_error *err)
{
    memset(m, 0, sizeof *m);
    rd r = {.p = in, .len = len};
    m->kind = r_u32(&r);
    m->flags = r_u32(&r);
    m->step = r_u64(&r);
    m->nbuf = r_count(&r, 20, LOCO_STATE_MAX_BUFFERS);
    if (m->nbuf > 0) {
        m->bufs = calloc((size_t)m->nbuf, sizeof *m->bufs);
        if (NULL == m->bufs) {
            return LOCO_ERR_NOMEM;
        }
    }
    for (int i = 0; i < m->nbuf && !r.bad; i++) {
        m->bufs[i].bytes = r_u64(&r);
        m->bufs[i].digest = r_u64(&r);
        r_text(&r, m->bufs[i].name, sizeof m->bufs[i].name);
    }
    if (m->kind < LOCO_RECONF_RECOVER || m->kind > LOCO_RECONF_SYNC ||
        m->flags > (LOCO_RECONF_LEAVE | LOCO_RECONF_JOINER | LOCO_RECONF_BROKEN)) {
        r_fail(&r, "unknown kind or flags");
    }
    loco_status st = r_finish(&r, "RECONF", err);
    if (LOCO_OK != st) {
        loco_msg_reconf_free(m);
    }
    return st;
}

void loco_msg_reconf_free(loco_msg_reconf *m)
{
    free(m->bufs);
    m->bufs = NULL;
    m->nbuf = 0;
}

/* ---- PLAN ----------------------------------------------------------------------------------- */

size_t loco_plan_encode(const loco_plan *p, uint8_t *out, size_t cap)
{
    wr w = {.p = out, .cap = cap};
    w_u32(&w, p->round);
    w_u32(&w, p->kind);
    w_u32(&w, p->flags);
    w_u64(&w, p->step);
    w_counts(&w, &p->counts);
    w_u32(&w, (uint32_t)p->n_joined);
    w_u32(&w, (uint32_t)p->n_left);
    w_u32(&w, (uint32_t)p->n_removed);
    w_u32(&w, (uint32_t)p->n_repaired);
    w_u32(&w, (uint32_t)p->n);
    for (int i = 0; i < p->n; i++) {
        w_member(&w, &p->members[i]);
    }
    w_u32(&w, (uint32_t)p->nbuf);
    for (int i = 0; i < p->nbuf; i++) {
        w_u64(&w, p->digests[i]);
        w_u64(&w, p->bytes[i]);
    }
    w_u32(&w, (uint32_t)p->n_send);
    for (int i = 0; i < p->n_send; i++) {
        w_u32(&w, p->senders[i]);
    }
    w_u32(&w, (uint32_t)p->n_recv);
    for (int i = 0; i < p->n_recv; i++) {
        w_u32(&w, p->receivers[i]);
        w_bytes(&w, p->masks + (size_t)i * LOCO_STATE_MASK_BYTES, LOCO_STATE_MASK_BYTES);
    }
    w_u32(&w, p->streams);
    w_text(&w, p->note, LOCO_REASON_MAX);
    return w_done(&w);
}

loco_status loco_plan_decode(const uint8_t *in, size_t len, uint32_t epoch, loco_plan *p,
                             loco_error *err)
{
    memset(p, 0, sizeof *p);
    p->epoch = epoch;
    rd r = {.p = in, .len = len};
    p->round = r_u32(&r);
    p->kind = r_u32(&r);
    p->flags = r_u32(&r);
    p->step = r_u64(&r);
    r_counts(&r, &p->counts);
    p->n_joined = (int)r_u32(&r);
    p->n_left = (int)r_u32(&r);
    p->n_removed = (int)r_u32(&r);
    p->n_repaired = (int)r_u32(&r);
    p->n = r_count(&r, LOCO_MEMBER_BYTES, LOCO_MAX_WORLD);
    p->members = calloc((size_t)p->n + 1, sizeof *p->members);
    for (int i = 0; i < p->n && NULL != p->members && !r.bad; i++) {
        r_member(&r, &p->members[i], "PLAN");
    }
    p->nbuf = r_count(&r, 16, LOCO_STATE_MAX_BUFFERS);
    p->digests = calloc((size_t)p->nbuf + 1, sizeof *p->digests);
    p->bytes = calloc((size_t)p->nbuf + 1, sizeof *p->bytes);
    for (int i = 0; i < p->nbuf && NULL != p->digests && NULL != p->bytes && !r.bad; i++) {
        p->digests[i] = r_u64(&r);
        p->bytes[i] = r_u64(&r);
    }
    p->n_send = r_count(&r, 4, LOCO_MAX_WORLD);
    p->senders = calloc((size_t)p->n_send + 1, sizeof *p->senders);
    for (int i = 0; i < p->n_send && NULL != p->senders && !r.bad; i++) {
        p->senders[i] = r_u32(&r);
    }
    p->n_recv = r_count(&r, 4 + LOCO_STATE_MASK_BYTES, LOCO_MAX_WORLD);
    p->receivers = calloc((size_t)p->n_recv + 1, sizeof *p->receivers);
    p->masks = calloc((size_t)p->n_recv + 1, LOCO_STATE_MASK_BYTES);
    for (int i = 0; i < p->n_recv && NULL != p->receivers && NULL != p->masks && !r.bad; i++) {
        p->receivers[i] = r_u32(&r);
        const uint8_t *b = r_take(&r, LOCO_STATE_MASK_BYTES);
        if (NULL != b) {
            memcpy(p->masks + (size_t)i * LOCO_STATE_MASK_BYTES, b, LOCO_STATE_MASK_BYTES);
        }
    }
    p->streams = r_u32(&r);
    r_text(&r, p->note, sizeof p->note);
    if (NULL == p->members || NULL == p->digests || NULL == p->bytes || NULL == p->senders ||
        NULL == p->receivers || NULL == p->masks) {
        loco_plan_free(p);
        return LOCO_ERR_NOMEM;
    }
    if (p->kind < LOCO_RECONF_RECOVER || p->kind > LOCO_RECONF_SYNC ||
        p->flags > (LOCO_PLAN_NEW_EPOCH | LOCO_PLAN_ERROR) || p->streams > LOCO_MAX_STREAMS ||
        (p->n_recv > 0 && (0 == p->streams || 0 == p->n_send))) {
        r_fail(&r, "kind, flags or streams out of range");
    }
    for (int i = 0; i < p->n && !r.bad; i++) { /* ids are unique: members are found by id */
        for (int j = 0; j < i; j++) {
            if (p->members[i].id == p->members[j].id) {
                r_fail(&r, "a member id appears twice");
                break;
            }
        }
    }
    loco_status st = r_finish(&r, "PLAN", err);
    if (LOCO_OK != st) {
        loco_plan_free(p);
    }
    return st;
}

void loco_plan_free(loco_plan *p)
{
    free(p->members);
    free(p->digests);
    free(p->bytes);
    free(p->senders);
    free(p->receivers);
    free(p->masks);
    p->members = NULL;
    p->digests = p->bytes = NULL;
    p->senders = p->receivers = NULL;
    p->masks = NULL;
    p->n = p->nbuf = p->n_send = p->n_recv = 0;
}

/* ---- PLAN_DONE / COMMIT, JOIN_REQ, REDIRECT, XFER_REQ ----------------------------------------- */

size_t loco_msg_round_encode(uint32_t round, int32_t status, const char *reason, uint8_t *out)
{
    wr w = {.p = out, .cap = 12 + LOCO_REASON_MAX};
    w_u32(&w, round);
    w_u32(&w, (uint32_t)status);
    w_text(&w, reason, LOCO_REASON_MAX);
    return w_done(&w);
}

loco_status loco_msg_round_decode(const uint8_t *in, size_t len, uint32_t *round,
                                  int32_t *status, char reason[LOCO_REASON_MAX + 1],
                                  loco_error *err)
{
    rd r = {.p = in, .len = len};
    *round = r_u32(&r);
    *status = (int32_t)r_u32(&r);
    r_text(&r, reason, LOCO_REASON_MAX + 1);
    if (*status > 0 || *status < -100) {
        r_fail(&r, "status out of range");
    }
    return r_finish(&r, "PLAN_DONE/COMMIT", err);
}

size_t loco_join_req_encode(uint32_t wanted, const loco_member *self, uint8_t *out)
{
    wr w = {.p = out, .cap = 4 + LOCO_MEMBER_BYTES};
    w_u32(&w, wanted);
    w_member(&w, self);
    return w_done(&w);
}

loco_status loco_join_req_decode(const uint8_t *in, size_t len, uint32_t *wanted,
                                 loco_member *self, loco_error *err)
{
    rd r = {.p = in, .len = len};
    *wanted = r_u32(&r);
    const uint8_t *b = r_take(&r, LOCO_MEMBER_BYTES);
    if (NULL != b) {
        /* The coordinator assigns the joiner's id, so the record's id field (bytes 72..75,
         * loco_member_encode) is ignored: zeroed before the record is validated. */
        uint8_t tmp[LOCO_MEMBER_BYTES];
        memcpy(tmp, b, sizeof tmp);
        memset(tmp + 72, 0, 4);
        loco_error e = {0};
        if (LOCO_OK != loco_member_decode(tmp, self, "JOIN_REQ", &e)) {
            r_fail(&r, e.msg);
        }
    }
    return r_finish(&r, "JOIN_REQ", err);
}

void loco_redirect_encode(const char *host, uint16_t port, uint8_t out[LOCO_REDIRECT_BYTES])
{
    loco_member m = {.port = port};
    loco_copy_str(m.host, sizeof m.host, host);
    uint8_t rec[LOCO_MEMBER_BYTES];
    loco_member_encode(&m, rec);
    memcpy(out, rec, LOCO_REDIRECT_BYTES); /* host[64], u16 port, u16 0 */
    out[66] = out[67] = 0;
}

loco_status loco_redirect_decode(const uint8_t *in, size_t len, char host[LOCO_HOST_MAX],
                                 uint16_t *port, loco_error *err)
{
    if (LOCO_REDIRECT_BYTES != len) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL, "REDIRECT of %zu bytes, expected %d", len,
                              LOCO_REDIRECT_BYTES);
    }
    uint8_t rec[LOCO_MEMBER_BYTES] = {0};
    memcpy(rec, in, LOCO_REDIRECT_BYTES);
    rec[66] = rec[67] = 0;
    loco_member m;
    LOCO_TRY(loco_member_decode(rec, &m, "REDIRECT", err));
    memcpy(host, m.host, LOCO_HOST_MAX);
    *port = m.port;
    return LOCO_OK;
}

void loco_xfer_req_encode(uint32_t round, uint32_t receiver, uint32_t stripe, uint32_t nstripes,
                          uint8_t out[LOCO_XFER_REQ_BYTES])
{
    wr w = {.p = out, .cap = LOCO_XFER_REQ_BYTES};
    w_u32(&w, round);
    w_u32(&w, receiver);
    w_u32(&w, stripe);
    w_u32(&w, nstripes);
}

loco_status loco_xfer_req_decode(const uint8_t *in, size_t len, uint32_t *round,
                                 uint32_t *receiver, uint32_t *stripe, uint32_t *nstripes,
                                 loco_error *err)
{
    rd r = {.p = in, .len = len};
    *round = r_u32(&r);
    *receiver = r_u32(&r);
    *stripe = r_u32(&r);
    *nstripes = r_u32(&r);
    if (*stripe >= *nstripes || *nstripes > 65536) {
        r_fail(&r, "stripe out of range");
    }
    return r_finish(&r, "XFER_REQ", err);
}
