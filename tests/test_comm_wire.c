/* tests/test_comm_wire.c — the wire format and hostile input: frame and payload decoders,
 * malformed frames injected into live connections, handshakes refused with a reason, and the
 * JOIN bootstrap's bad input (unreachable address, port in use, nonce/world mismatch, garbage).
 */
#include "test_comm_ranks.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

/* ---- decoders ------------------------------------------------------------------------------- */

Test(wire, header_round_trip_and_rejections)
{
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_DATA, .step = 5,
                           .epoch = 3, .length = 1000, .seq = 1ull << 40, .chunk = 77,
                           .sig = 0xabcdef01};
    uint8_t raw[LOCO_FRAME_HEADER_BYTES];
    loco_frame_header_encode(&h, raw);
    loco_frame_header d;
    cr_assert_eq(LOCO_OK, loco_frame_header_decode(raw, 1000, &d, NULL));
    cr_assert(d.version == h.version && d.type == h.type && d.step == h.step &&
              d.epoch == h.epoch && d.length == h.length && d.seq == h.seq &&
              d.chunk == h.chunk && d.sig == h.sig);

    loco_error e = {0};
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_frame_header_decode(raw, 999, &d, &e));
    cr_assert(NULL != strstr(e.msg, "exceeds the limit 999"), "%s", e.msg);
    uint8_t bad[LOCO_FRAME_HEADER_BYTES];
    memcpy(bad, raw, sizeof bad);
    bad[0] ^= 1;
    loco_error_clear(&e);
    cr_assert_eq(LOCO_ERR_FORMAT, loco_frame_header_decode(bad, 1 << 20, &d, &e));
    cr_assert(NULL != strstr(e.msg, "magic"), "%s", e.msg);
    memcpy(bad, raw, sizeof bad);
    bad[4] = 2;
    loco_error_clear(&e);
    cr_assert_eq(LOCO_ERR_VERSION, loco_frame_header_decode(bad, 1 << 20, &d, &e));
    cr_assert(NULL != strstr(e.msg, "version 2"), "%s", e.msg);
    memcpy(bad, raw, sizeof bad);
    bad[5] = 0;
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_frame_header_decode(bad, 1 << 20, &d, NULL));
    bad[5] = LOCO_FRAME_TYPE_MAX + 1;
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_frame_header_decode(bad, 1 << 20, &d, NULL));
}

Test(wire, payload_decoders_reject_bad_fields)
{
    loco_hello hello = {.nonce = 9, .from = 1, .to = 2, .world = 3, .kind = LOCO_CONN_DATA,
                        .stream = 3, .streams = 4, .caps = 1};
    uint8_t buf[512];
    loco_hello_encode(&hello, buf);
    loco_hello back;
    cr_assert_eq(LOCO_OK, loco_hello_decode(buf, LOCO_HELLO_BYTES, &back, NULL));
    cr_assert_eq(back.stream, 3);
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_hello_decode(buf, LOCO_HELLO_BYTES - 1, &back, NULL));
    hello.to = 3; /* outside the world */
    loco_hello_encode(&hello, buf);
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_hello_decode(buf, LOCO_HELLO_BYTES, &back, NULL));
    hello.to = 2;
    hello.stream = 4; /* stream >= streams */
    loco_hello_encode(&hello, buf);
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_hello_decode(buf, LOCO_HELLO_BYTES, &back, NULL));

    loco_join join = {.nonce = 5, .rank = 1, .world = 2, .port = 4000};
    strcpy(join.host, "10.0.0.7");
    loco_join_encode(&join, buf);
    loco_join jb;
    cr_assert_eq(LOCO_OK, loco_join_decode(buf, LOCO_JOIN_BYTES, &jb, NULL));
    cr_assert_str_eq(jb.host, "10.0.0.7");
    buf[24 + 3] = '\n'; /* a control character in the host */
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_join_decode(buf, LOCO_JOIN_BYTES, &jb, NULL));
    memset(buf + 24, 'a', LOCO_HOST_MAX); /* unterminated host */
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_join_decode(buf, LOCO_JOIN_BYTES, &jb, NULL));

    loco_member members[3] = {{"a", 1, 0, 0, 9}, {"b", 2, 0, 1, 8}, {"c", 3, 0, 2, 7}};
    size_t len = loco_table_encode(77, 0, 3, members, buf);
    loco_member mb[3];
    uint64_t nonce = 0;
    uint32_t epoch = 9;
    cr_assert_eq(LOCO_OK, loco_table_decode(buf, len, 3, &nonce, &epoch, mb, NULL));
    cr_assert_eq(nonce, 77);
    cr_assert_eq(epoch, 0);
    cr_assert_str_eq(mb[2].host, "c");
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_table_decode(buf, len, 4, &nonce, &epoch, mb, NULL));
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_table_decode(buf, len - 1, 3, &nonce, &epoch, mb, NULL));

    len = loco_abort_encode(2, "because\x01 reasons", buf);
    int lost = -5;
    char reason[LOCO_REASON_MAX + 1];
    cr_assert_eq(LOCO_OK, loco_abort_decode(buf, len, &lost, reason, NULL));
    cr_assert_eq(lost, 2);
    cr_assert_str_eq(reason, "because? reasons"); /* non-printables never reach a log */
    buf[0] = 0xfe; /* rank -2 */
    buf[1] = buf[2] = buf[3] = 0xff;
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_abort_decode(buf, len, &lost, reason, NULL));
    uint32_t code = 0;
    cr_assert_eq(LOCO_ERR_PROTOCOL, loco_ack_decode(buf, 3, &code, reason, NULL));
}

/* ---- malformed frames on live connections --------------------------------------------------- */

typedef enum inject_kind {
    INJECT_GARBAGE,       /* 32 bytes of 0xAB on a data stream */
    INJECT_VERSION,       /* a header of protocol version 9 */
    INJECT_LENGTH,        /* a DATA header announcing 1 GiB */
    INJECT_EPOCH,         /* a DATA frame of epoch 7 */
    INJECT_SEQ,           /* a DATA frame of operation 9 */
    INJECT_SIGNATURE,     /* the next operation's frame with a foreign signature */
    INJECT_CHUNK,         /* the next operation's frame with chunk 999 */
    INJECT_SHORT,         /* the next operation's frame with 12 bytes instead of 2000 */
    INJECT_CTL_GARBAGE,   /* garbage on the control connection */
    INJECT_CTL_DATA,      /* a DATA frame on the control connection */
    INJECT_COUNT
} inject_kind;

static const char *const g_inject_expect[INJECT_COUNT] = {
    "bad frame magic", "protocol version 9", "exceeds the limit", "epoch 7", "operation 9",
    "different collective", "chunk 999", "12 bytes for chunk 0", "control: protocol violation",
    "unexpected DATA frame on the control",
};

#define INJECT_COUNT_ELEMS 1000

static void body_inject(rank_slot *s)
{
    inject_kind kind = (inject_kind)(intptr_t)s->arg;
    float x[INJECT_COUNT_ELEMS];
    for (int i = 0; i < INJECT_COUNT_ELEMS; i++) {
        x[i] = (float)i;
    }
    s->st[0] = loco_barrier(s->comm, &s->info[0]); /* operation 1 */
    if (1 == s->rank) {
        usleep(100000); /* rank 0 may still wait for this rank's confirmation of the barrier */
        /* what the next allreduce (operation 2) will look like, for a well-formed frame */
        loco_op op = {.kind = LOCO_OP_ALLREDUCE, .count = INJECT_COUNT_ELEMS,
                      .dtype = LOCO_DTYPE_F32, .reduce = LOCO_REDUCE_SUM, .root = -1};
        loco_op_prepare(s->comm, &op);
        loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_DATA,
                               .epoch = 0, .seq = 2, .chunk = 0, .step = 0, .sig = op.sig,
                               .length = 2000};
        uint8_t buf[LOCO_FRAME_HEADER_BYTES + 2000];
        memset(buf, 0xAB, sizeof buf);
        size_t len = sizeof buf;
        switch (kind) {
        case INJECT_VERSION: h.version = 9; break;
        case INJECT_LENGTH: h.length = 1u << 30; break;
        case INJECT_EPOCH: h.epoch = 7; break;
        case INJECT_SEQ: h.seq = 9; break;
        case INJECT_SIGNATURE: h.sig ^= 0xdeadbeef; break;
        case INJECT_CHUNK: h.chunk = 999; break;
        case INJECT_SHORT: h.length = 12; len = LOCO_FRAME_HEADER_BYTES + 12; break;
        case INJECT_CTL_DATA: h.length = 0; len = LOCO_FRAME_HEADER_BYTES; break;
        default: break;
        }
        if (INJECT_GARBAGE != kind && INJECT_CTL_GARBAGE != kind) {
            loco_frame_header_encode(&h, buf);
        }
        bool ctl = INJECT_CTL_GARBAGE == kind || INJECT_CTL_DATA == kind;
        int fd = ctl ? s->comm->ctl[0]->fd : s->comm->out[0]->fd;
        s->st[3] = (ssize_t)len == send(fd, buf, len, MSG_NOSIGNAL) ? LOCO_OK : LOCO_ERR_IO;
        usleep(50000);
    }
    s->st[1] = loco_allreduce(s->comm, x, x, INJECT_COUNT_ELEMS, LOCO_DTYPE_F32, LOCO_REDUCE_SUM,
                              &s->info[1]);
    if (LOCO_OK != s->st[1] && 0 == s->info[1].error[0]) {
        loco_copy_str(s->info[1].error, sizeof s->info[1].error, loco_comm_error(s->comm));
    }
}

Test(wire, malformed_frames_drop_the_sender_with_a_named_error, .timeout = 120)
{
    for (int kind = 0; kind < INJECT_COUNT; kind++) {
        rank_slot slots[MAX_RANKS];
        loco_comm_config cfg = local_config();
        cfg.heartbeat_s = 5; /* no heartbeat interleaves with the injected bytes */
        cfg.peer_timeout_s = 30;
        cfg.op_timeout_s = 10;
        run_ranks(2, &cfg, body_inject, (void *)(intptr_t)kind, slots);
        cr_assert_eq(LOCO_OK, slots[0].st[0], "case %d: barrier: %s", kind, slots[0].info[0].error);
        cr_assert_eq(LOCO_OK, slots[1].st[3], "case %d: injection failed", kind);
        for (int r = 0; r < 2; r++) {
            cr_assert_eq(LOCO_ERR_PEER_LOST, slots[r].st[1], "case %d rank %d: status %d (%s)",
                         kind, r, slots[r].st[1], slots[r].info[1].error);
        }
        const char *msg = slots[0].info[1].error;
        cr_assert(NULL != strstr(msg, g_inject_expect[kind]),
                  "case %d: rank 0 said '%s', expected it to mention '%s'", kind, msg,
                  g_inject_expect[kind]);
        cr_assert(NULL != strstr(msg, "rank 1 (127.0.0.1:"), "case %d: '%s' names no peer", kind,
                  msg);
    }
}

/* ---- refused handshakes on a running communicator ------------------------------------------ */

typedef struct hello_case {
    const char *name;
    uint8_t version;
    uint32_t epoch;
    bool garbage;
    bool wrong_nonce;
    uint32_t expect_code;
    const char *expect_reason;
} hello_case;

static const hello_case g_hello_cases[] = {
    {"garbage", LOCO_PROTOCOL_VERSION, 0, true, false, LOCO_ACK_BAD_PEER, "bad frame magic"},
    {"nonce", LOCO_PROTOCOL_VERSION, 0, false, true, LOCO_ACK_BAD_NONCE, "run nonce"},
    {"version", 7, 0, false, false, LOCO_ACK_BAD_VERSION, "protocol version 7"},
    {"epoch", LOCO_PROTOCOL_VERSION, 5, false, false, LOCO_ACK_RETRY, "epoch 5"},
    {"duplicate", LOCO_PROTOCOL_VERSION, 0, false, false, LOCO_ACK_BAD_PEER, "duplicate"},
};
#define HELLO_CASES (int)(sizeof g_hello_cases / sizeof g_hello_cases[0])

static void body_hello(rank_slot *s)
{
    s->st[0] = loco_barrier(s->comm, NULL);
    if (1 == s->rank) {
        char *reasons = s->out = calloc(HELLO_CASES, LOCO_REASON_MAX + 1);
        for (int k = 0; k < HELLO_CASES; k++) {
            const hello_case *c = &g_hello_cases[k];
            int fd = -1;
            uint64_t deadline = loco_now_ns() + 3000000000ull;
            if (LOCO_OK != loco_net_dial("127.0.0.1", s->comm->members[1].port, deadline, &fd,
                                         NULL)) {
                s->st[1] = LOCO_ERR_IO;
                continue;
            }
            uint8_t buf[LOCO_FRAME_HEADER_BYTES + LOCO_HELLO_BYTES];
            memset(buf, 0x5A, sizeof buf);
            if (!c->garbage) {
                loco_frame_header h = {.version = c->version, .type = LOCO_FRAME_HELLO,
                                       .epoch = c->epoch, .length = LOCO_HELLO_BYTES};
                loco_hello hello = {.nonce = s->comm->nonce ^ (c->wrong_nonce ? 1 : 0),
                                    .from = 0, .to = 1, .world = 2, .kind = LOCO_CONN_CONTROL,
                                    .streams = (uint16_t)s->cfg.streams};
                loco_frame_header_encode(&h, buf);
                loco_hello_encode(&hello, buf + LOCO_FRAME_HEADER_BYTES);
            }
            loco_net_send_all(fd, buf, sizeof buf, deadline, "test", NULL);
            loco_frame_header ack;
            uint8_t payload[4 + LOCO_REASON_MAX];
            uint32_t code = 99;
            if (LOCO_OK == loco_net_recv_frame(fd, &ack, payload, sizeof payload, deadline,
                                               "listener", NULL)) {
                loco_ack_decode(payload, ack.length, &code, reasons + k * (LOCO_REASON_MAX + 1),
                                NULL);
            }
            s->digest[k] = code;
            close(fd);
        }
    }
    float x[3] = {1, 2, 3};
    s->st[2] = loco_allreduce(s->comm, x, x, 3, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[2]);
}

Test(wire, bad_handshakes_are_refused_and_the_group_carries_on, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(2, &cfg, body_hello, NULL, slots);
    const char *reasons = slots[1].out;
    for (int k = 0; k < HELLO_CASES; k++) {
        const char *reason = reasons + k * (LOCO_REASON_MAX + 1);
        cr_assert_eq(g_hello_cases[k].expect_code, slots[1].digest[k], "%s: code %llu (%s)",
                     g_hello_cases[k].name, (unsigned long long)slots[1].digest[k], reason);
        cr_assert(NULL != strstr(reason, g_hello_cases[k].expect_reason), "%s: reason '%s'",
                  g_hello_cases[k].name, reason);
    }
    for (int r = 0; r < 2; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[2], "rank %d: allreduce after the refusals: %s", r,
                     slots[r].info[2].error);
    }
    free(slots[1].out);
}

/* ---- JOIN bootstrap ------------------------------------------------------------------------- */

static void body_join_allreduce(rank_slot *s)
{
    float x[5] = {1, 2, 3, 4, (float)s->rank};
    s->st[0] = loco_allreduce(s->comm, x, x, 5, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[0]);
    s->seconds[0] = x[4];
    s->digest[0] = loco_comm_nonce(s->comm);
}

Test(join, three_ranks_form_a_group_by_dialing_rank_0, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    cfg.bootstrap = LOCO_BOOTSTRAP_JOIN;
    snprintf(cfg.join, sizeof cfg.join, "127.0.0.1:%d", free_port());
    run_ranks(3, &cfg, body_join_allreduce, NULL, slots);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0], "rank %d: %s", r, slots[r].info[0].error);
        cr_assert_eq(slots[r].seconds[0], 3.0f);
        cr_assert_eq(slots[0].digest[0], slots[r].digest[0], "rank %d has another run nonce", r);
    }
}

/* One rank's loco_comm_init with a JOIN config, on its own thread. */
typedef struct join_try {
    loco_comm_config cfg;
    loco_status st;
    loco_error err;
    double seconds;
} join_try;

static void *join_thread(void *p)
{
    join_try *t = p;
    loco_comm_t comm = NULL;
    double t0 = loco_now_s();
    t->st = loco_comm_init(&comm, &t->cfg, &t->err);
    t->seconds = loco_now_s() - t0;
    loco_comm_free(comm);
    return NULL;
}

static join_try join_config(int rank, int world, int port)
{
    join_try t = {.cfg = LOCO_COMM_CONFIG_INIT};
    t.cfg.bootstrap = LOCO_BOOTSTRAP_JOIN;
    t.cfg.rank = rank;
    t.cfg.world = world;
    t.cfg.connect_timeout_s = 1.5;
    t.cfg.has_key = true;
    memset(t.cfg.key, 0x5c, sizeof t.cfg.key);
    snprintf(t.cfg.join, sizeof t.cfg.join, "127.0.0.1:%d", port);
    return t;
}

static void run_pair(join_try *a, join_try *b)
{
    pthread_t ta, tb;
    pthread_create(&ta, NULL, join_thread, a);
    pthread_create(&tb, NULL, join_thread, b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
}

Test(join, unreachable_address_fails_in_time_naming_it, .timeout = 30)
{
    int port = free_port();
    join_try t = join_config(1, 2, port);
    join_thread(&t);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", port);
    cr_assert_eq(LOCO_ERR_PEER_LOST, t.st, "status %d: %s", t.st, t.err.msg);
    cr_assert(NULL != strstr(t.err.msg, where) && NULL != strstr(t.err.msg, "refused"), "%s",
              t.err.msg);
    cr_assert(t.seconds < 4.0, "took %.1f s", t.seconds);
}

Test(join, port_in_use_is_a_clear_error, .timeout = 30)
{
    int fd = -1, port = 0;
    cr_assert_eq(LOCO_OK, loco_net_listen("127.0.0.1", 0, &fd, &port, NULL));
    join_try t = join_config(0, 2, port);
    snprintf(t.cfg.listen_host, sizeof t.cfg.listen_host, "127.0.0.1");
    join_thread(&t);
    close(fd);
    cr_assert_eq(LOCO_ERR_CONFIG, t.st, "status %d: %s", t.st, t.err.msg);
    cr_assert(NULL != strstr(t.err.msg, "already in use"), "%s", t.err.msg);
    cr_assert(t.seconds < 1.0);
}

Test(join, nonce_and_world_mismatches_are_refused_with_the_reason, .timeout = 30)
{
    int port = free_port();
    join_try a = join_config(0, 2, port), b = join_config(1, 2, port);
    a.cfg.run_nonce = 111;
    b.cfg.run_nonce = 222;
    run_pair(&a, &b);
    cr_assert_eq(LOCO_ERR_AUTH, b.st, "status %d: %s", b.st, b.err.msg);
    cr_assert(NULL != strstr(b.err.msg, "nonce") && NULL != strstr(b.err.msg, "rank 0 at"), "%s",
              b.err.msg);
    cr_assert_eq(LOCO_ERR_TIMEOUT, a.st, "status %d: %s", a.st, a.err.msg);
    cr_assert(NULL != strstr(a.err.msg, "never joined"), "%s", a.err.msg);

    port = free_port();
    a = join_config(0, 2, port);
    b = join_config(1, 3, port);
    run_pair(&a, &b);
    cr_assert_eq(LOCO_ERR_PROTOCOL, b.st, "status %d: %s", b.st, b.err.msg);
    cr_assert(NULL != strstr(b.err.msg, "world size 3"), "%s", b.err.msg);
}

/* A server that is not loco: it answers with HTTP. */
static void *http_server(void *p)
{
    int lfd = *(int *)p;
    struct pollfd pf = {.fd = lfd, .events = POLLIN};
    if (1 == poll(&pf, 1, 5000)) {
        int fd = accept(lfd, NULL, NULL);
        const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
        usleep(200000);
        close(fd);
    }
    return NULL;
}

Test(join, garbage_from_the_join_address_is_named, .timeout = 30)
{
    int lfd = -1, port = 0;
    cr_assert_eq(LOCO_OK, loco_net_listen("127.0.0.1", 0, &lfd, &port, NULL));
    pthread_t th;
    pthread_create(&th, NULL, http_server, &lfd);
    join_try t = join_config(1, 2, port);
    join_thread(&t);
    pthread_join(th, NULL);
    close(lfd);
    cr_assert_neq(LOCO_OK, t.st);
    cr_assert(NULL != strstr(t.err.msg, "bad frame magic") && NULL != strstr(t.err.msg, "rank 0"),
              "%s", t.err.msg);
}

Test(join, invalid_configs_are_refused_before_any_network)
{
    join_try t = join_config(1, 2, 1);
    snprintf(t.cfg.join, sizeof t.cfg.join, "nohostport");
    join_thread(&t);
    cr_assert_eq(LOCO_ERR_CONFIG, t.st);
    cr_assert(NULL != strstr(t.err.msg, "has no port"), "%s", t.err.msg);
    t = join_config(1, 2, 1);
    snprintf(t.cfg.join, sizeof t.cfg.join, "no-such-host.invalid:4000");
    join_thread(&t);
    cr_assert_eq(LOCO_ERR_CONFIG, t.st, "%s", t.err.msg);
    cr_assert(NULL != strstr(t.err.msg, "cannot resolve"), "%s", t.err.msg);
    t = join_config(5, 2, 1);
    join_thread(&t);
    cr_assert_eq(LOCO_ERR_CONFIG, t.st);
    cr_assert(NULL != strstr(t.err.msg, "rank 5, world 2"), "%s", t.err.msg);
    t = join_config(1, 2, 1);
    t.cfg.streams = 0;
    join_thread(&t);
    cr_assert_eq(LOCO_ERR_CONFIG, t.st);
    cr_assert(NULL != strstr(t.err.msg, "streams"), "%s", t.err.msg);
    t = join_config(1, 2, 1);
    t.cfg.chunk_bytes = 100;
    join_thread(&t);
    cr_assert_eq(LOCO_ERR_CONFIG, t.st);
    t = join_config(1, 2, 1);
    t.cfg.version = 0;
    join_thread(&t);
    cr_assert_eq(LOCO_ERR_CONFIG, t.st);
    cr_assert(NULL != strstr(t.err.msg, "LOCO_COMM_CONFIG_INIT"), "%s", t.err.msg);
}
