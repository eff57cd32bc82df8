/* collectives/link.c — the built-in link emulator, and units for rates, durations and sizes.
 *
 * A WAN link is modelled where the bytes leave the sender, so it needs no root and no netem
 * (this kernel has none) and is reproducible from a seed:
 *   - rate:    one emulated wire per (sender -> receiver); the connections to that peer take
 *              turns (round robin) in segments of about 0.5 ms of wire time, so a heartbeat
 *              never waits behind a whole tensor;
 *   - delay:   a segment is released to the socket `delay` after its last bit left the wire;
 *   - jitter:  the delay of each segment is uniform in [delay - jitter, delay + jitter] (>= 0),
 *              and a connection still delivers in order (TCP), so jitter never reorders;
 *   - loss:    each 1448-byte packet is lost with probability `loss`; a segment with losses is
 *              delivered one retransmission later (2 * delay, at least 1 ms) and the lost
 *              packets are sent again (they cost wire time);
 *   - window:  at most `window` bytes per connection are sent and not yet acknowledged (acks
 *              take `delay` back), so one connection reaches at most window / RTT — the reason
 *              several streams are needed on a long fat pipe;
 *   - outages: nothing leaves the wire during an outage; a segment under way pauses.
 * The event loop calls loco_link_advance() when loco_link_next_ns() is due and lets each socket
 * write only loco_link_released() bytes.
 */
#include "collectives/comm_impl.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINK_PACKET_BYTES 1448u             /* TCP payload of one Ethernet frame */
#define LINK_HORIZON_NS 2000000ull          /* schedule up to 2 ms ahead of now */
#define LINK_MIN_RETRANSMIT_NS 1000000ull   /* a retransmission costs at least 1 ms */

bool loco_link_active(const loco_link_config *link)
{
    return link->rate_bps > 0 || link->delay_s > 0 || link->jitter_s > 0 || link->loss > 0 ||
           link->n_outages > 0;
}

loco_status loco_link_config_check(const loco_link_config *link, loco_error *err)
{
    if (!(link->rate_bps >= 0 && isfinite(link->rate_bps))) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "link rate %g must be >= 0 (0 = unlimited)",
                              link->rate_bps);
    }
    if (link->rate_bps > 0 && link->rate_bps < 8000) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "link rate %g bit/s is below the minimum of 8kbit", link->rate_bps);
    }
    if (!(link->delay_s >= 0 && link->delay_s <= 60) ||
        !(link->jitter_s >= 0 && link->jitter_s <= 60)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "link delay %g s and jitter %g s must be in [0, 60]", link->delay_s,
                              link->jitter_s);
    }
    if (!(link->loss >= 0 && link->loss < 1)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "link loss %g must be in [0, 1)", link->loss);
    }
    if (!(link->window_bytes >= 0 && isfinite(link->window_bytes))) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "link window %g must be >= 0 (0 = unlimited)",
                              link->window_bytes);
    }
    if (link->n_outages < 0 || link->n_outages > LOCO_LINK_MAX_OUTAGES) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%d link outages (at most %d)",
                              link->n_outages, LOCO_LINK_MAX_OUTAGES);
    }
    double prev_end = 0;
    for (int i = 0; i < link->n_outages; i++) {
        const loco_link_outage *o = &link->outages[i];
        if (!(o->start_s >= prev_end && o->duration_s > 0 && isfinite(o->duration_s))) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "link outage %d (at %g s for %g s): outages need a positive "
                                  "duration, in time order, without overlap",
                                  i, o->start_s, o->duration_s);
        }
        prev_end = o->start_s + o->duration_s;
    }
    return LOCO_OK;
}

loco_status loco_link_init(loco_link *link, const loco_link_config *cfg, int nstreams,
                           uint64_t start_ns, uint64_t seed, uint64_t rng_stream)
{
    memset(link, 0, sizeof *link);
    link->cfg = *cfg;
    link->active = loco_link_active(cfg);
    link->start_ns = start_ns;
    link->free_ns = start_ns;
    link->seed = seed;
    link->rng_stream = rng_stream;
    link->nstreams = nstreams;
    link->streams = calloc((size_t)nstreams, sizeof *link->streams);
    if (NULL == link->streams) {
        return LOCO_ERR_NOMEM;
    }
    return LOCO_OK;
}

void loco_link_free(loco_link *link)
{
    if (NULL == link->streams) {
        return;
    }
    for (int s = 0; s < link->nstreams; s++) {
        free(link->streams[s].ring);
    }
    free(link->streams);
    link->streams = NULL;
}

void loco_link_enqueue(loco_link *link, int stream, uint64_t bytes, uint64_t now_ns)
{
    loco_link_stream *st = &link->streams[stream];
    if (0 == st->pending && now_ns > st->ready_ns) {
        st->ready_ns = now_ns;
    }
    st->pending += bytes;
}

uint64_t loco_link_released(const loco_link *link, int stream)
{
    return link->active ? link->streams[stream].released : UINT64_MAX;
}

static double link_uniform(loco_link *link)
{
    uint32_t r[4];
    loco_rng_block(link->seed, link->rng_stream, link->rng_counter++, r);
    return loco_u32_to_unit_double(r[0]);
}

/* How many of a segment's packets are lost (one draw per packet, four per Philox block). */
static uint64_t link_lost_packets(loco_link *link, uint64_t bytes)
{
    if (link->cfg.loss <= 0) {
        return 0;
    }
    uint64_t packets = (bytes + LINK_PACKET_BYTES - 1) / LINK_PACKET_BYTES;
    uint64_t lost = 0;
    uint32_t threshold = (uint32_t)(link->cfg.loss * 4294967296.0);
    for (uint64_t p = 0; p < packets; p += 4) {
        uint32_t r[4];
        loco_rng_block(link->seed, link->rng_stream, link->rng_counter++, r);
        for (uint64_t k = 0; k < 4 && p + k < packets; k++) {
            lost += r[k] < threshold;
        }
    }
    return lost;
}

static uint64_t link_wire_ns(const loco_link *link, uint64_t bytes)
{
    if (link->cfg.rate_bps <= 0) {
        return 0;
    }
    return (uint64_t)((double)bytes * 8.0 / link->cfg.rate_bps * 1e9);
}

/* Move t past any outage it falls into. */
static uint64_t link_skip_outages(const loco_link *link, uint64_t t)
{
    for (int i = 0; i < link->cfg.n_outages; i++) {
        uint64_t a = link->start_ns + (uint64_t)(link->cfg.outages[i].start_s * 1e9);
        uint64_t b = a + (uint64_t)(link->cfg.outages[i].duration_s * 1e9);
        if (t >= a && t < b) {
            t = b;
        }
    }
    return t;
}

/* A transmission over [start, end) pauses for every outage that begins inside it. */
static uint64_t link_extend_over_outages(const loco_link *link, uint64_t start, uint64_t end)
{
    for (int i = 0; i < link->cfg.n_outages; i++) {
        uint64_t a = link->start_ns + (uint64_t)(link->cfg.outages[i].start_s * 1e9);
        uint64_t len = (uint64_t)(link->cfg.outages[i].duration_s * 1e9);
        if (a > start && a < end) {
            end += len;
        }
    }
    return end;
}

static loco_status link_push(loco_link_stream *st, const loco_link_grant *g)
{
    if (st->tail - st->ack == st->cap) {
        uint64_t cap = st->cap ? 2 * st->cap : 64;
        loco_link_grant *ring = malloc(cap * sizeof *ring);
        if (NULL == ring) {
            return LOCO_ERR_NOMEM;
        }
        for (uint64_t i = st->ack; i < st->tail; i++) {
            ring[i % cap] = st->ring[i % st->cap];
        }
        free(st->ring);
        st->ring = ring;
        st->cap = cap;
    }
    st->ring[st->tail % st->cap] = *g;
    st->tail++;
    return LOCO_OK;
}

static bool link_window_open(const loco_link *link, const loco_link_stream *st)
{
    return link->cfg.window_bytes <= 0 || (double)st->inflight < link->cfg.window_bytes;
}

static void link_release_due(loco_link *link, uint64_t now_ns)
{
    for (int s = 0; s < link->nstreams; s++) {
        loco_link_stream *st = &link->streams[s];
        while (st->rel < st->tail && st->ring[st->rel % st->cap].deliver_ns <= now_ns) {
            st->released += st->ring[st->rel % st->cap].bytes;
            link->delivered_bytes += st->ring[st->rel % st->cap].bytes;
            st->rel++;
        }
        while (st->ack < st->rel && st->ring[st->ack % st->cap].ack_ns <= now_ns) {
            const loco_link_grant *g = &st->ring[st->ack % st->cap];
            bool was_closed = !link_window_open(link, st);
            st->inflight -= g->bytes;
            st->ack++;
            if (was_closed && st->pending > 0 && g->ack_ns > st->ready_ns) {
                st->ready_ns = g->ack_ns; /* the window reopened then, not when we woke */
            }
        }
    }
}

/* The next stream (round robin) with bytes to send and room in its window, or -1. */
static int link_pick_stream(loco_link *link)
{
    for (int i = 0; i < link->nstreams; i++) {
        int s = (link->rr + i) % link->nstreams;
        loco_link_stream *st = &link->streams[s];
        if (st->pending > 0 && link_window_open(link, st)) {
            link->rr = (s + 1) % link->nstreams;
            return s;
        }
    }
    return -1;
}

/* Segment size: about 0.5 ms of wire time, one packet to 64 KiB (everything when unlimited). */
static uint64_t link_quantum(const loco_link *link)
{
    if (link->cfg.rate_bps <= 0) {
        return UINT64_MAX;
    }
    double q = link->cfg.rate_bps / 8.0 * 0.0005;
    if (q < LINK_PACKET_BYTES) {
        q = LINK_PACKET_BYTES;
    }
    if (q > 65536) {
        q = 65536;
    }
    return (uint64_t)q;
}

loco_status loco_link_advance(loco_link *link, uint64_t now_ns)
{
    if (!link->active) {
        return LOCO_OK;
    }
    link_release_due(link, now_ns);
    const loco_link_config *c = &link->cfg;
    uint64_t quantum = link_quantum(link);
    uint64_t delay_ns = (uint64_t)(c->delay_s * 1e9);
    uint64_t retransmit_ns = 2 * delay_ns > LINK_MIN_RETRANSMIT_NS ? 2 * delay_ns
                                                                    : LINK_MIN_RETRANSMIT_NS;
    while (c->rate_bps <= 0 || link->free_ns <= now_ns + LINK_HORIZON_NS) {
        int s = link_pick_stream(link);
        if (s < 0) {
            break;
        }
        loco_link_stream *st = &link->streams[s];
        uint64_t seg = st->pending < quantum ? st->pending : quantum;
        if (c->window_bytes > 0) {
            uint64_t room = (uint64_t)c->window_bytes - st->inflight;
            seg = seg < room ? seg : room;
        }
        uint64_t lost = link_lost_packets(link, seg);
        uint64_t resent = lost * LINK_PACKET_BYTES < seg ? lost * LINK_PACKET_BYTES : seg;
        /* The wire starts when it is free and the bytes were ready — possibly in the past if
         * this thread woke late: the emulated link keeps its rate under CPU contention. */
        uint64_t start = link_skip_outages(link, link->free_ns > st->ready_ns ? link->free_ns
                                                                             : st->ready_ns);
        uint64_t end = link_extend_over_outages(link, start,
                                                start + link_wire_ns(link, seg + resent));
        double d = c->delay_s + c->jitter_s * (2.0 * link_uniform(link) - 1.0);
        uint64_t deliver = end + (d > 0 ? (uint64_t)(d * 1e9) : 0) + (lost ? retransmit_ns : 0);
        if (deliver < st->last_deliver_ns) {
            deliver = st->last_deliver_ns;
        }
        loco_link_grant g = {.deliver_ns = deliver, .ack_ns = deliver + delay_ns, .bytes = seg};
        LOCO_TRY(link_push(st, &g));
        st->pending -= seg;
        st->inflight += seg;
        st->last_deliver_ns = deliver;
        link->free_ns = end;
        link->lost_packets += lost;
    }
    link_release_due(link, now_ns);
    return LOCO_OK;
}

uint64_t loco_link_next_ns(const loco_link *link)
{
    if (!link->active) {
        return UINT64_MAX;
    }
    uint64_t t = UINT64_MAX;
    bool can_schedule = false;
    for (int s = 0; s < link->nstreams; s++) {
        const loco_link_stream *st = &link->streams[s];
        if (st->rel < st->tail && st->ring[st->rel % st->cap].deliver_ns < t) {
            t = st->ring[st->rel % st->cap].deliver_ns;
        }
        if (st->pending > 0) {
            if (link_window_open(link, st)) {
                can_schedule = true;
            } else if (st->ack < st->tail && st->ring[st->ack % st->cap].ack_ns < t) {
                t = st->ring[st->ack % st->cap].ack_ns;
            }
        }
    }
    if (can_schedule) {
        uint64_t when = link->free_ns > LINK_HORIZON_NS ? link->free_ns - LINK_HORIZON_NS : 0;
        if (link->cfg.rate_bps <= 0) {
            when = 0;
        }
        t = when < t ? when : t;
    }
    return t;
}

/* ---- units ---------------------------------------------------------------------------------- */

/* Split "12.5mbit" into 12.5 and "mbit" (lower-cased, at most 15 characters). */
static loco_status split_number(const char *text, const char *what, double *value, char unit[16],
                                loco_error *err)
{
    if (NULL == text) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%s: missing value", what);
    }
    while (isspace((unsigned char)*text)) {
        text++;
    }
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || !isfinite(v) || v < 0) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%s '%s' is not a non-negative number", what,
                              text);
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    size_t n = 0;
    while (end[n] && !isspace((unsigned char)end[n]) && n < 15) {
        unit[n] = (char)tolower((unsigned char)end[n]);
        n++;
    }
    unit[n] = '\0';
    if (end[n] && !isspace((unsigned char)end[n])) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "%s '%s': unit too long", what, text);
    }
    *value = v;
    return LOCO_OK;
}

typedef struct unit_scale {
    const char *name;
    double scale;
} unit_scale;

static loco_status apply_unit(const char *text, const char *what, const unit_scale *units,
                              const char *allowed, double *out, loco_error *err)
{
    double v;
    char unit[16];
    LOCO_TRY(split_number(text, what, &v, unit, err));
    for (const unit_scale *u = units; NULL != u->name; u++) {
        if (0 == strcmp(unit, u->name)) {
            *out = v * u->scale;
            return LOCO_OK;
        }
    }
    return loco_error_set(err, LOCO_ERR_CONFIG, "%s '%s': unknown unit '%s' (use %s)", what, text,
                          unit, allowed);
}

loco_status loco_parse_rate(const char *text, double *bits_per_s, loco_error *err)
{
    /* Bits per second; "bps" follows networking usage (bits), B/s means bytes. */
    static const unit_scale units[] = {
        {"", 1},         {"bit", 1},        {"bps", 1},         {"bit/s", 1},
        {"kbit", 1e3},   {"kbps", 1e3},     {"kbit/s", 1e3},    {"mbit", 1e6},
        {"mbps", 1e6},   {"mbit/s", 1e6},   {"gbit", 1e9},      {"gbps", 1e9},
        {"gbit/s", 1e9}, {"tbit", 1e12},    {"b/s", 8},         {"kb/s", 8e3},
        {"mb/s", 8e6},   {"gb/s", 8e9},     {NULL, 0},
    };
    /* "MB/s" lower-cases to "mb/s": bytes. "mbit"/"mbps": bits. */
    return apply_unit(text, "rate", units, "bit, kbit, mbit, gbit (or mbps, gbps), or B/s, MB/s, GB/s",
                      bits_per_s, err);
}

loco_status loco_parse_duration(const char *text, double *seconds, loco_error *err)
{
    static const unit_scale units[] = {
        {"", 1}, {"s", 1}, {"ms", 1e-3}, {"us", 1e-6}, {"ns", 1e-9}, {"m", 60}, {"min", 60},
        {"h", 3600}, {NULL, 0},
    };
    return apply_unit(text, "duration", units, "ns, us, ms, s, m, h", seconds, err);
}

loco_status loco_parse_bytes(const char *text, double *bytes, loco_error *err)
{
    static const unit_scale units[] = {
        {"", 1},          {"b", 1},          {"k", 1024.0},   {"kib", 1024.0},
        {"kb", 1e3},      {"m", 1048576.0},  {"mib", 1048576.0}, {"mb", 1e6},
        {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9}, {NULL, 0},
    };
    return apply_unit(text, "size", units, "B, K/KiB, M/MiB, G/GiB (1024) or KB, MB, GB (1000)",
                      bytes, err);
}

static loco_status parse_outage(const char *value, loco_link_config *link, loco_error *err)
{
    if (link->n_outages >= LOCO_LINK_MAX_OUTAGES) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "more than %d link outages",
                              LOCO_LINK_MAX_OUTAGES);
    }
    char start[64];
    const char *plus = strchr(value, '+');
    if (NULL == plus || (size_t)(plus - value) >= sizeof start) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "link outage '%s' must be START+DURATION, e.g. 10s+2s", value);
    }
    memcpy(start, value, (size_t)(plus - value));
    start[plus - value] = '\0';
    loco_link_outage *o = &link->outages[link->n_outages];
    LOCO_TRY(loco_parse_duration(start, &o->start_s, err));
    LOCO_TRY(loco_parse_duration(plus + 1, &o->duration_s, err));
    link->n_outages++;
    return LOCO_OK;
}

static loco_status parse_link_pair(const char *key, const char *value, loco_link_config *link,
                                   bool *outages_cleared, loco_error *err)
{
    if (0 == strcmp(key, "rate")) {
        return loco_parse_rate(value, &link->rate_bps, err);
    }
    if (0 == strcmp(key, "delay")) {
        return loco_parse_duration(value, &link->delay_s, err);
    }
    if (0 == strcmp(key, "jitter")) {
        return loco_parse_duration(value, &link->jitter_s, err);
    }
    if (0 == strcmp(key, "window")) {
        return loco_parse_bytes(value, &link->window_bytes, err);
    }
    if (0 == strcmp(key, "loss")) {
        double v;
        char unit[16];
        LOCO_TRY(split_number(value, "loss", &v, unit, err));
        if (0 == strcmp(unit, "%")) {
            v /= 100.0;
        } else if (0 != strcmp(unit, "")) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "loss '%s': give a probability (0.01) or a percentage (1%%)",
                                  value);
        }
        link->loss = v;
        return LOCO_OK;
    }
    if (0 == strcmp(key, "outage")) {
        if (!*outages_cleared) {
            link->n_outages = 0;
            *outages_cleared = true;
        }
        return parse_outage(value, link, err);
    }
    return loco_error_set(err, LOCO_ERR_CONFIG,
                          "unknown link key '%s' (allowed: rate, delay, jitter, loss, window, "
                          "outage)",
                          key);
}

loco_status loco_parse_link(const char *text, loco_link_config *link, loco_error *err)
{
    char buf[1024];
    if (NULL == text || strlen(text) >= sizeof buf) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "link specification missing or too long");
    }
    strcpy(buf, text);
    bool outages_cleared = false;
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); NULL != item;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (NULL == eq) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "link item '%s' is not key=value (e.g. rate=100mbit)", item);
        }
        *eq = '\0';
        LOCO_TRY(parse_link_pair(item, eq + 1, link, &outages_cleared, err));
    }
    return loco_link_config_check(link, err);
}
