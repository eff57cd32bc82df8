/* tests/test_comm_link.c — the link emulator: its model on a virtual clock (rate, delay, jitter,
 * window, loss, outages, fairness between streams, reproducibility), unit parsing, and measured
 * latency and throughput through real sockets matching the settings within 10%.
 */
#include "test_comm_ranks.h"

#include <math.h>

#define T0 1000000000ull /* virtual clocks start at 1 s */

static double secs(uint64_t ns) { return (double)(ns - T0) * 1e-9; }

/* Drive a link by its own next_ns until everything queued is released; returns when stream s
 * had released `bytes` (virtual ns). */
static uint64_t run_until_released(loco_link *link, int s, uint64_t bytes)
{
    uint64_t now = T0;
    for (int guard = 0; guard < 10000000; guard++) {
        cr_assert_eq(LOCO_OK, loco_link_advance(link, now));
        if (loco_link_released(link, s) >= bytes) {
            return now;
        }
        uint64_t next = loco_link_next_ns(link);
        cr_assert_neq(next, UINT64_MAX, "the link stalled with %llu of %llu bytes released",
                      (unsigned long long)loco_link_released(link, s), (unsigned long long)bytes);
        now = next > now ? next : now + 1;
    }
    cr_assert_fail("no progress");
    return 0;
}

static loco_link_config link_cfg(double rate, double delay, double window)
{
    loco_link_config c = {.rate_bps = rate, .delay_s = delay, .window_bytes = window};
    return c;
}

Test(link, rate_and_delay_on_a_virtual_clock)
{
    loco_link link;
    loco_link_config c = link_cfg(8e6, 0.010, 0); /* 1 MB/s */
    cr_assert_eq(LOCO_OK, loco_link_init(&link, &c, 2, T0, 1, 1));
    loco_link_enqueue(&link, 0, 1000000, T0);
    double t = secs(run_until_released(&link, 0, 1000000));
    cr_assert(fabs(t - 1.010) < 0.002, "1 MB at 8 Mbit/s + 10 ms took %.4f s", t);
    loco_link_free(&link);
}

/* The thread driving a link may wake late (a loaded machine): the emulated wire must still
 * have been busy all along, so a late wake-up costs no throughput. */
Test(link, late_wake_ups_do_not_slow_the_emulated_wire)
{
    loco_link link;
    loco_link_config c = link_cfg(8e6, 0.010, 0);
    cr_assert_eq(LOCO_OK, loco_link_init(&link, &c, 1, T0, 1, 1));
    loco_link_enqueue(&link, 0, 1000000, T0);
    uint64_t now = T0;
    while (loco_link_released(&link, 0) < 1000000) {
        now += 30000000; /* only every 30 ms, never when the link asks */
        loco_link_advance(&link, now);
    }
    double t = secs(now);
    cr_assert(t >= 1.010 && t < 1.010 + 0.030, "1 MB at 1 MB/s advanced every 30 ms: %.3f s", t);
    loco_link_free(&link);
}

Test(link, window_limits_one_stream_to_window_per_round_trip)
{
    loco_link link;
    loco_link_config c = link_cfg(0, 0.050, 65536);
    cr_assert_eq(LOCO_OK, loco_link_init(&link, &c, 1, T0, 1, 1));
    loco_link_enqueue(&link, 0, 1 << 20, T0); /* 16 windows */
    double t = secs(run_until_released(&link, 0, 1 << 20));
    /* window k leaves at k RTTs (100 ms) and arrives 50 ms later: the 16th at 1.55 s */
    cr_assert(fabs(t - 1.550) < 0.001, "1 MiB through a 64 KiB window at RTT 100 ms: %.4f s", t);
    loco_link_free(&link);
}

Test(link, streams_share_the_rate_fairly)
{
    loco_link link;
    loco_link_config c = link_cfg(8e6, 0, 0);
    cr_assert_eq(LOCO_OK, loco_link_init(&link, &c, 2, T0, 1, 1));
    loco_link_enqueue(&link, 0, 500000, T0);
    loco_link_enqueue(&link, 1, 500000, T0);
    double t0 = secs(run_until_released(&link, 0, 500000));
    double t1 = secs(run_until_released(&link, 1, 500000));
    cr_assert(t0 > 0.97 && t0 < 1.01 && t1 > 0.97 && t1 < 1.01,
              "two streams of 0.5 MB at 1 MB/s finished at %.3f and %.3f s", t0, t1);
    loco_link_free(&link);
}

Test(link, jitter_stays_in_bounds_keeps_order_and_averages_the_delay)
{
    loco_link link;
    loco_link_config c = link_cfg(80e6, 0.020, 0);
    c.jitter_s = 0.010;
    cr_assert_eq(LOCO_OK, loco_link_init(&link, &c, 1, T0, 7, 1));
    double sum = 0, sumsq = 0, prev_arrival = 0;
    int n = 200;
    for (int k = 0; k < n; k++) {
        uint64_t sent = T0 + (uint64_t)k * 50000000ull; /* one small message every 50 ms */
        loco_link_advance(&link, sent);
        loco_link_enqueue(&link, 0, 1000, sent);
        uint64_t now = sent;
        for (;;) {
            loco_link_advance(&link, now);
            if (loco_link_released(&link, 0) >= (uint64_t)(k + 1) * 1000) {
                break;
            }
            uint64_t next = loco_link_next_ns(&link);
            cr_assert_neq(next, UINT64_MAX);
            now = next > now ? next : now + 1;
        }
        double d = (double)(now - sent) * 1e-9 - 1000 * 8 / 80e6;
        cr_assert(d >= 0.010 - 1e-6 && d <= 0.030 + 1e-6, "message %d delayed %.4f s", k, d);
        cr_assert(secs(now) >= prev_arrival);
        prev_arrival = secs(now);
        sum += d;
        sumsq += d * d;
    }
    double mean = sum / n, sd = sqrt(sumsq / n - mean * mean);
    cr_assert(fabs(mean - 0.020) < 0.002, "mean delay %.4f s", mean);
    cr_assert(sd > 0.004, "jitter did not vary the delay (sd %.4f s)", sd);
    loco_link_free(&link);
}

Test(link, loss_costs_retransmissions_reproducibly)
{
    uint64_t lost[3];
    double took[3];
    uint64_t seeds[3] = {5, 5, 6};
    for (int k = 0; k < 3; k++) {
        loco_link link;
        loco_link_config c = link_cfg(100e6, 0.010, 0);
        c.loss = 0.01;
        cr_assert_eq(LOCO_OK, loco_link_init(&link, &c, 1, T0, seeds[k], 1));
        loco_link_enqueue(&link, 0, 10000000, T0);
        took[k] = secs(run_until_released(&link, 0, 10000000));
        lost[k] = link.lost_packets;
        loco_link_free(&link);
    }
    double expect = 0.01 * 10000000.0 / 1448; /* about 69 packets */
    cr_assert(fabs((double)lost[0] - expect) < 5 * sqrt(expect), "lost %llu, expected ~%.0f",
              (unsigned long long)lost[0], expect);
    cr_assert_eq(lost[0], lost[1], "same seed, same losses");
    cr_assert(took[0] == took[1], "same seed, same timing");
    cr_assert(took[0] > 0.8 + 0.010 + 0.015, "losses cost no time: %.4f s", took[0]);
    cr_assert(lost[2] != lost[0] || took[2] != took[0], "another seed, other losses");
}

Test(link, outage_pauses_the_wire)
{
    loco_link link;
    loco_link_config c = link_cfg(8e6, 0, 0);
    c.n_outages = 1;
    c.outages[0] = (loco_link_outage){.start_s = 0.2, .duration_s = 0.5};
    cr_assert_eq(LOCO_OK, loco_link_config_check(&c, NULL));
    cr_assert_eq(LOCO_OK, loco_link_init(&link, &c, 1, T0, 1, 1));
    loco_link_enqueue(&link, 0, 500000, T0);
    double t = secs(run_until_released(&link, 0, 500000));
    cr_assert(fabs(t - 1.0) < 0.01, "0.5 MB at 1 MB/s with a 0.5 s outage took %.3f s", t);
    loco_link_free(&link);
}

Test(link, units_and_link_strings)
{
    double v = 0;
    cr_assert_eq(LOCO_OK, loco_parse_rate("100mbit", &v, NULL));
    cr_assert_eq(v, 1e8);
    cr_assert_eq(LOCO_OK, loco_parse_rate("2.5gbps", &v, NULL));
    cr_assert_eq(v, 2.5e9);
    cr_assert_eq(LOCO_OK, loco_parse_rate("10MB/s", &v, NULL));
    cr_assert_eq(v, 8e7);
    cr_assert_eq(LOCO_OK, loco_parse_duration("40ms", &v, NULL));
    cr_assert(fabs(v - 0.04) < 1e-12);
    cr_assert_eq(LOCO_OK, loco_parse_duration("250us", &v, NULL));
    cr_assert(fabs(v - 250e-6) < 1e-15);
    cr_assert_eq(LOCO_OK, loco_parse_duration("2m", &v, NULL));
    cr_assert_eq(v, 120);
    cr_assert_eq(LOCO_OK, loco_parse_bytes("4MiB", &v, NULL));
    cr_assert_eq(v, 4194304);
    cr_assert_eq(LOCO_OK, loco_parse_bytes("4MB", &v, NULL));
    cr_assert_eq(v, 4e6);
    loco_error e = {0};
    cr_assert_eq(LOCO_ERR_CONFIG, loco_parse_rate("fast", &v, &e));
    cr_assert_eq(LOCO_ERR_CONFIG, loco_parse_duration("10parsecs", &v, NULL));
    cr_assert_eq(LOCO_ERR_CONFIG, loco_parse_duration("-5ms", &v, NULL));

    loco_link_config l = {.window_bytes = 1};
    cr_assert_eq(LOCO_OK, loco_parse_link("rate=1gbit,delay=50ms,jitter=2ms,loss=1%,window=8MiB,"
                                          "outage=10s+2s,outage=20s+1s",
                                          &l, NULL));
    cr_assert_eq(l.rate_bps, 1e9);
    cr_assert(fabs(l.delay_s - 0.05) < 1e-12 && fabs(l.jitter_s - 0.002) < 1e-12);
    cr_assert(fabs(l.loss - 0.01) < 1e-12);
    cr_assert_eq(l.window_bytes, 8388608);
    cr_assert_eq(l.n_outages, 2);
    cr_assert_eq(l.outages[1].start_s, 20);
    loco_error_clear(&e);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_parse_link("rate=1gbit,colour=blue", &l, &e));
    cr_assert(NULL != strstr(e.msg, "unknown link key 'colour'"), "%s", e.msg);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_parse_link("loss=1.5", &l, NULL));
    cr_assert_eq(LOCO_ERR_CONFIG, loco_parse_link("outage=10s", &l, NULL));
    cr_assert_eq(LOCO_ERR_CONFIG, loco_parse_link("outage=10s+2s,outage=5s+1s", &l, NULL));
}

/* ---- through real sockets ------------------------------------------------------------------- */

/* The wall-clock link tests measure the link: no result digest (hashing 96 MiB on the receiver
 * before it confirms would be counted as link time). */
static loco_comm_config link_test_config(void)
{
    loco_comm_config cfg = local_config();
    cfg.result_digest = false;
    cfg.ft.coordinator = LOCO_COORD_NONE; /* the link alone: no coordinator round trip */
    return cfg;
}

typedef struct wire_case {
    size_t bytes;
    int rounds;
} wire_case;

/* Rank 0 measures: ping-pong (two 1-float broadcasts) or one big broadcast to rank 1. */
static void body_pingpong(rank_slot *s)
{
    const wire_case *c = s->arg;
    float one = 1;
    loco_barrier(s->comm, NULL);
    for (int k = 0; k < c->rounds; k++) {
        double t0 = loco_now_s();
        s->st[0] |= loco_broadcast(s->comm, &one, 1, LOCO_DTYPE_F32, 0, NULL);
        s->st[0] |= loco_broadcast(s->comm, &one, 1, LOCO_DTYPE_F32, 1, NULL);
        s->seconds[k] = loco_now_s() - t0;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

Test(link_wire, measured_latency_matches_the_delay, .timeout = 60)
{
    TIMING_TEST_BEGIN();
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = link_test_config();
    cfg.link.delay_s = 0.020;
    cfg.confirm = false; /* a broadcast's root returns once its bytes are out */
    wire_case c = {.rounds = 7};
    run_ranks(2, &cfg, body_pingpong, &c, slots);
    cr_assert_eq(LOCO_OK, slots[0].st[0]);
    qsort(slots[0].seconds, (size_t)c.rounds, sizeof(double), cmp_double);
    double rtt = slots[0].seconds[c.rounds / 2];
    LOCO_INFO("link: median round trip %.2f ms (2 x 20 ms emulated)", rtt * 1e3);
    cr_assert(fabs(rtt - 0.040) <= 0.004, "round trip %.4f s with a 20 ms one-way delay", rtt);
}

static void body_stream(rank_slot *s)
{
    const wire_case *c = s->arg;
    uint8_t *buf = malloc(c->bytes);
    memset(buf, s->rank, c->bytes);
    loco_barrier(s->comm, NULL);
    double t0 = loco_now_s();
    s->st[0] = loco_broadcast(s->comm, buf, c->bytes, LOCO_DTYPE_BYTE, 0, &s->info[0]);
    s->seconds[0] = loco_now_s() - t0;
    free(buf);
}

/* Rate rank 0 achieved: its wire bytes over the broadcast's time minus the two one-way delays
 * (the data's, and the confirmation's way back). */
static double measured_bps(const rank_slot *s, double delay)
{
    return (double)s->info[0].bytes_sent * 8 / (s->seconds[0] - 2 * delay);
}

Test(link_wire, measured_throughput_matches_the_rate, .timeout = 60)
{
    TIMING_TEST_BEGIN();
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = link_test_config();
    cfg.link.rate_bps = 200e6;
    cfg.link.delay_s = 0.010;
    wire_case c = {.bytes = 8 << 20};
    run_ranks(2, &cfg, body_stream, &c, slots);
    cr_assert_eq(LOCO_OK, slots[0].st[0], "%s", slots[0].info[0].error);
    double bps = measured_bps(&slots[0], cfg.link.delay_s);
    LOCO_INFO("link: measured %.1f Mbit/s (200 Mbit/s emulated)", bps / 1e6);
    cr_assert(fabs(bps / 200e6 - 1) <= 0.10, "measured %.1f Mbit/s on a 200 Mbit/s link",
              bps / 1e6);
}

/* A 1 Gbit/s, 50 ms link with the kernel's 4 MiB window: one stream is window-bound (about
 * 4 MiB per 100 ms RTT = 335 Mbit/s); four streams fill the link. */
Test(link_wire, streams_fill_a_long_fat_pipe, .timeout = 120)
{
    TIMING_TEST_BEGIN();
    double got[2];
    int streams[2] = {1, 4};
    for (int k = 0; k < 2; k++) {
        rank_slot slots[MAX_RANKS];
        loco_comm_config cfg = link_test_config();
        cfg.streams = streams[k];
        cfg.chunk_bytes = 1 << 20;
        cfg.link.rate_bps = 1e9;
        cfg.link.delay_s = 0.050;
        cfg.link.window_bytes = 4 << 20;
        wire_case c = {.bytes = (size_t)(k ? 96 : 48) << 20};
        run_ranks(2, &cfg, body_stream, &c, slots);
        cr_assert_eq(LOCO_OK, slots[0].st[0], "%s", slots[0].info[0].error);
        got[k] = measured_bps(&slots[0], cfg.link.delay_s);
        LOCO_INFO("link: %d stream(s) on 1 Gbit/s, 50 ms, 4 MiB window: %.0f Mbit/s",
                  streams[k], got[k] / 1e6);
    }
    cr_assert(got[0] > 0.25e9 && got[0] < 0.40e9, "one stream: %.0f Mbit/s (window-bound ~335)",
              got[0] / 1e6);
    cr_assert(got[1] >= 0.90e9, "four streams: %.0f Mbit/s, below 90%% of 1 Gbit/s",
              got[1] / 1e6);
}

/* Emulated loss shows up in the operation's retransmission count and costs time. */
Test(link_wire, emulated_loss_is_counted_as_retransmissions, .timeout = 60)
{
    TIMING_TEST_BEGIN();
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = link_test_config();
    cfg.link.rate_bps = 400e6;
    cfg.link.delay_s = 0.002;
    cfg.link.loss = 0.01;
    wire_case c = {.bytes = 4 << 20};
    run_ranks(2, &cfg, body_stream, &c, slots);
    cr_assert_eq(LOCO_OK, slots[0].st[0], "%s", slots[0].info[0].error);
    double packets = (double)(4 << 20) / 1448;
    cr_assert(slots[0].info[0].retransmits > 0.01 * packets / 3,
              "%u retransmissions for %.0f packets at 1%% loss", slots[0].info[0].retransmits,
              packets);
}
