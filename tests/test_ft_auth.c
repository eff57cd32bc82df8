/* tests/test_ft_auth.c — who may connect (collectives/auth.c), against a running group of the
 * in-process backend: a forged proof, a replayed handshake, truncated handshakes and a dialer
 * with the wrong key are refused (and the group carries on); with transport.integrity a frame
 * whose MAC does not verify drops its sender; the run key's sources and their errors.
 */
#include "collectives/ft_impl.h"
#include "test_comm_ranks.h"

#include <poll.h>
#include <sys/socket.h>

/* ---- helpers: a raw client speaking the handshake by hand ----------------------------------- */

static int dial_member(const loco_comm_t comm, int rank)
{
    int fd = -1;
    uint64_t deadline = loco_now_ns() + 3000000000ull;
    cr_assert_eq(LOCO_OK, loco_net_dial("127.0.0.1", comm->members[rank].port, deadline, &fd,
                                        NULL));
    return fd;
}

static void send_frame(int fd, uint8_t type, uint32_t epoch, const uint8_t *payload, uint32_t len)
{
    uint8_t buf[LOCO_FRAME_HEADER_BYTES + 128];
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = type, .epoch = epoch,
                           .length = len};
    loco_frame_header_encode(&h, buf);
    memcpy(buf + LOCO_FRAME_HEADER_BYTES, payload, len);
    loco_net_send_all(fd, buf, LOCO_FRAME_HEADER_BYTES + len, loco_now_ns() + 2000000000ull,
                      "test", NULL);
}

/* Read one frame; returns its type (0 if the connection closed or timed out). */
static int recv_frame(int fd, uint8_t *payload, uint32_t cap, uint32_t *len)
{
    loco_frame_header h;
    if (LOCO_OK != loco_net_recv_frame(fd, &h, payload, cap, loco_now_ns() + 3000000000ull,
                                       "listener", NULL)) {
        return 0;
    }
    *len = h.length;
    return h.type;
}

static uint32_t ack_code(const uint8_t *payload, uint32_t len, char *reason)
{
    uint32_t code = 99;
    loco_ack_decode(payload, len, &code, reason, NULL);
    return code;
}

/* A joiner-kind HELLO (the kind a running member completes the handshake for). */
static void join_hello(const loco_comm_t comm, uint8_t out[LOCO_HELLO_BYTES])
{
    loco_hello hello = {.nonce = comm->nonce, .from = LOCO_ID_ANY, .kind = LOCO_CONN_JOIN,
                        .streams = 1};
    loco_random_bytes(hello.challenge, sizeof hello.challenge);
    loco_hello_encode(&hello, out);
}

/* ---- attacks on a running member's listener ------------------------------------------------- */

typedef struct attack_result {
    uint32_t forged_code, replay_code;
    char forged_reason[LOCO_REASON_MAX + 1], replay_reason[LOCO_REASON_MAX + 1];
    loco_status wrong_key_st;
    char wrong_key_msg[512];
    bool legit_ok;
} attack_result;

/* Forged: a HELLO, then a PROOF of random bytes. */
static void attack_forged(loco_comm_t comm, attack_result *out)
{
    int fd = dial_member(comm, 1);
    uint8_t hello[LOCO_HELLO_BYTES], buf[256];
    join_hello(comm, hello);
    send_frame(fd, LOCO_FRAME_HELLO, comm->epoch, hello, sizeof hello);
    uint32_t len = 0;
    cr_assert_eq(LOCO_FRAME_CHALLENGE, recv_frame(fd, buf, sizeof buf, &len));
    uint8_t proof[LOCO_PROOF_PAYLOAD];
    loco_random_bytes(proof, sizeof proof);
    send_frame(fd, LOCO_FRAME_PROOF, comm->epoch, proof, sizeof proof);
    cr_assert_eq(LOCO_FRAME_ACK, recv_frame(fd, buf, sizeof buf, &len));
    out->forged_code = ack_code(buf, len, out->forged_reason);
    close(fd);
}

/* Replay: relay a legitimate handshake, recording what the dialer sent; then send the same
 * HELLO and PROOF on a new connection. The acceptor's fresh challenge makes the old proof
 * worthless. */
static void attack_replay(loco_comm_t comm, attack_result *out)
{
    int sp[2];
    cr_assert_eq(0, socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
    loco_net_set_nonblocking(sp[0]);
    loco_net_set_nonblocking(sp[1]);
    int up = dial_member(comm, 1);
    loco_hs hs;
    loco_hello hello = {.nonce = comm->nonce, .from = LOCO_ID_ANY, .kind = LOCO_CONN_JOIN,
                        .streams = 1};
    loco_hs_dial(&hs, sp[0], comm->key, comm->epoch, &hello);
    uint8_t rec[512];
    size_t nrec = 0;
    uint64_t deadline = loco_now_ns() + 3000000000ull;
    loco_hs_result r = LOCO_HS_AGAIN;
    while (LOCO_HS_AGAIN == r && loco_now_ns() < deadline) {
        uint8_t b[512];
        ssize_t n = recv(sp[1], b, sizeof b, MSG_DONTWAIT); /* dialer -> listener, recorded */
        if (n > 0) {
            memcpy(rec + nrec, b, (size_t)n);
            nrec += (size_t)n;
            send(up, b, (size_t)n, MSG_NOSIGNAL);
        }
        n = recv(up, b, sizeof b, MSG_DONTWAIT); /* listener -> dialer */
        if (n > 0) {
            send(sp[1], b, (size_t)n, MSG_NOSIGNAL);
        }
        r = loco_hs_step(&hs, NULL, NULL);
        usleep(1000);
    }
    out->legit_ok = LOCO_HS_OK == r;
    close(up);
    close(sp[0]);
    close(sp[1]);
    size_t hello_bytes = LOCO_FRAME_HEADER_BYTES + LOCO_HELLO_BYTES;
    cr_assert_eq(hello_bytes + LOCO_FRAME_HEADER_BYTES + LOCO_PROOF_PAYLOAD, nrec,
                 "recorded %zu bytes", nrec);
    int fd = dial_member(comm, 1);
    loco_net_send_all(fd, rec, hello_bytes, deadline, "replay", NULL);
    uint8_t buf[256];
    uint32_t len = 0;
    cr_assert_eq(LOCO_FRAME_CHALLENGE, recv_frame(fd, buf, sizeof buf, &len));
    loco_net_send_all(fd, rec + hello_bytes, nrec - hello_bytes, deadline, "replay", NULL);
    cr_assert_eq(LOCO_FRAME_ACK, recv_frame(fd, buf, sizeof buf, &len));
    out->replay_code = ack_code(buf, len, out->replay_reason);
    close(fd);
}

/* Truncated: half a HELLO; a whole HELLO and half a PROOF; then hang up. */
static void attack_truncated(loco_comm_t comm)
{
    uint8_t hello[LOCO_HELLO_BYTES], frame[LOCO_FRAME_HEADER_BYTES + LOCO_HELLO_BYTES];
    join_hello(comm, hello);
    loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_HELLO,
                           .epoch = comm->epoch, .length = LOCO_HELLO_BYTES};
    loco_frame_header_encode(&h, frame);
    memcpy(frame + LOCO_FRAME_HEADER_BYTES, hello, sizeof hello);
    int fd = dial_member(comm, 1);
    send(fd, frame, sizeof frame / 2, MSG_NOSIGNAL);
    close(fd);
    fd = dial_member(comm, 1);
    send(fd, frame, sizeof frame, MSG_NOSIGNAL);
    uint8_t buf[256];
    uint32_t len = 0;
    cr_assert_eq(LOCO_FRAME_CHALLENGE, recv_frame(fd, buf, sizeof buf, &len));
    uint8_t half[LOCO_FRAME_HEADER_BYTES + 10] = {0};
    loco_frame_header p = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_PROOF,
                           .length = LOCO_PROOF_PAYLOAD};
    loco_frame_header_encode(&p, half);
    send(fd, half, sizeof half, MSG_NOSIGNAL);
    close(fd);
}

static void attack_wrong_key(loco_comm_t comm, attack_result *out)
{
    uint8_t wrong[32];
    memset(wrong, 0x11, sizeof wrong);
    loco_hello hello = {.nonce = comm->nonce, .from = LOCO_ID_ANY, .kind = LOCO_CONN_JOIN,
                        .streams = 1};
    int fd = -1;
    loco_hs hs;
    loco_error e = {0};
    out->wrong_key_st = loco_auth_dial("127.0.0.1", comm->members[1].port, wrong, comm->epoch,
                                       &hello, loco_now_ns() + 3000000000ull, &fd, &hs, &e);
    snprintf(out->wrong_key_msg, sizeof out->wrong_key_msg, "%s", e.msg);
    if (fd >= 0) {
        close(fd);
    }
}

static void body_attacked(rank_slot *s)
{
    s->st[0] = loco_barrier(s->comm, &s->info[0]);
    if (0 == s->rank) {
        attack_result *a = s->out = calloc(1, sizeof *a);
        attack_forged(s->comm, a);
        attack_replay(s->comm, a);
        attack_truncated(s->comm);
        attack_wrong_key(s->comm, a);
    }
    float x[3] = {1, 2, (float)s->rank};
    s->st[1] = loco_barrier(s->comm, &s->info[1]);
    s->st[2] = loco_allreduce(s->comm, x, x, 3, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[2]);
    s->seconds[0] = x[2];
}

Test(auth, forged_replayed_truncated_and_keyless_handshakes_are_refused, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(2, &cfg, body_attacked, NULL, slots);
    attack_result *a = slots[0].out;
    cr_assert_eq(LOCO_ACK_BAD_AUTH, a->forged_code, "forged proof: code %u (%s)", a->forged_code,
                 a->forged_reason);
    cr_assert(NULL != strstr(a->forged_reason, "authentication failed"), "%s", a->forged_reason);
    cr_assert(a->legit_ok, "the relayed legitimate handshake failed");
    cr_assert_eq(LOCO_ACK_BAD_AUTH, a->replay_code, "replayed handshake: code %u (%s)",
                 a->replay_code, a->replay_reason);
    cr_assert(NULL != strstr(a->replay_reason, "replayed"), "%s", a->replay_reason);
    cr_assert_eq(LOCO_ERR_AUTH, a->wrong_key_st, "wrong key: %d %s", a->wrong_key_st,
                 a->wrong_key_msg);
    cr_assert(NULL != strstr(a->wrong_key_msg, "run key"), "%s", a->wrong_key_msg);
    for (int r = 0; r < 2; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d after the attacks: %s", r,
                     slots[r].info[1].error);
        cr_assert_eq(LOCO_OK, slots[r].st[2], "rank %d: %s", r, slots[r].info[2].error);
        cr_assert_eq(1.0f, (float)slots[r].seconds[0]);
    }
    free(a);
}

/* A handshake with the coordinator: a forged member is refused; the members are unaffected. */
static void body_coord_attacked(rank_slot *s)
{
    s->st[0] = loco_barrier(s->comm, NULL);
    if (1 == s->rank) {
        int fd = -1;
        loco_net_dial("127.0.0.1", s->comm->members[0].cport, loco_now_ns() + 2000000000ull, &fd,
                      NULL);
        loco_hello hello = {.nonce = s->comm->nonce, .from = 1, .kind = LOCO_CONN_COORD,
                            .streams = 1};
        uint8_t h[LOCO_HELLO_BYTES], buf[256];
        loco_hello_encode(&hello, h);
        send_frame(fd, LOCO_FRAME_HELLO, 0, h, sizeof h);
        uint32_t len = 0;
        s->digest[0] = (uint64_t)recv_frame(fd, buf, sizeof buf, &len);
        uint8_t proof[LOCO_PROOF_PAYLOAD] = {0};
        send_frame(fd, LOCO_FRAME_PROOF, 0, proof, sizeof proof);
        s->digest[1] = (uint64_t)recv_frame(fd, buf, sizeof buf, &len);
        char reason[LOCO_REASON_MAX + 1] = "";
        s->digest[2] = ack_code(buf, len, reason);
        close(fd);
    }
    float x = 1;
    s->st[1] = loco_allreduce(s->comm, &x, &x, 1, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[1]);
}

Test(auth, the_coordinator_refuses_a_member_without_the_key, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(3, &cfg, body_coord_attacked, NULL, slots);
    cr_assert_eq(LOCO_FRAME_CHALLENGE, slots[1].digest[0]);
    cr_assert_eq(LOCO_FRAME_ACK, slots[1].digest[1]);
    cr_assert_eq(LOCO_ACK_BAD_AUTH, slots[1].digest[2]);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d: %s", r, slots[r].info[1].error);
    }
}

/* ---- integrity ------------------------------------------------------------------------------ */

static void body_integrity(rank_slot *s)
{
    size_t n = 300007;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        x[i] = input_value(s->rank, i);
    }
    s->st[0] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[0]);
    s->digest[0] = s->info[0].digest;
    loco_state_buffer st = {"x", x, n * sizeof *x};
    if (2 == s->rank) {
        x[5] += 1; /* repaired over MAC'd state streams */
    }
    loco_reconf_report rep;
    s->st[1] = loco_comm_sync_point(s->comm, 1, &st, 1, NULL, &rep);
    s->digest[1] = loco_hash64(x, n * sizeof *x, 0);
    if (1 == s->rank) { /* a DATA frame with a wrong MAC, straight onto the data stream */
        loco_op op = {.kind = LOCO_OP_ALLREDUCE, .count = 64, .dtype = LOCO_DTYPE_F32,
                      .reduce = LOCO_REDUCE_SUM, .root = -1};
        loco_op_prepare(s->comm, &op);
        uint8_t frame[LOCO_FRAME_HEADER_BYTES + 84 + LOCO_FRAME_MAC_BYTES] = {0};
        loco_frame_header h = {.version = LOCO_PROTOCOL_VERSION, .type = LOCO_FRAME_DATA,
                               .epoch = s->comm->epoch, .seq = 2, .sig = op.sig, .length = 84};
        loco_frame_header_encode(&h, frame);
        send(s->comm->out[0]->fd, frame, sizeof frame, MSG_NOSIGNAL);
    }
    s->st[2] = loco_allreduce(s->comm, x, x, 64, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[2]);
    if (LOCO_OK != s->st[2] && 0 == s->info[2].error[0]) {
        loco_copy_str(s->info[2].error, sizeof s->info[2].error, loco_comm_error(s->comm));
    }
    free(x);
}

Test(auth, integrity_on_every_frame_and_a_forged_frame_drops_its_sender, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    cfg.integrity = true;
    run_ranks(3, &cfg, body_integrity, NULL, slots);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0], "rank %d: %s", r, slots[r].info[0].error);
        cr_assert_eq(slots[0].digest[0], slots[r].digest[0]);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d sync: %d", r, slots[r].st[1]);
        cr_assert_eq(slots[0].digest[1], slots[r].digest[1], "rank %d not repaired", r);
        cr_assert_eq(LOCO_ERR_PEER_LOST, slots[r].st[2], "rank %d: the forged frame passed", r);
    }
    cr_assert(NULL != strstr(slots[2].info[2].error, "integrity"), "rank 2 (the receiver): %s",
              slots[2].info[2].error);
}

/* ---- the run key ---------------------------------------------------------------------------- */

Test(auth, run_key_sources_and_their_errors)
{
    loco_comm_config cfg = LOCO_COMM_CONFIG_INIT;
    uint8_t key[32], other[32];
    bool have = true;
    unsetenv("LOCO_RUN_KEY");
    unsetenv("LOCO_RUN_KEY_FILE");
    cr_assert_eq(LOCO_OK, loco_key_resolve(&cfg, false, key, &have, NULL));
    cr_assert(!have);
    loco_error e = {0};
    cr_assert_eq(LOCO_ERR_CONFIG, loco_key_resolve(&cfg, true, key, &have, &e));
    cr_assert(NULL != strstr(e.msg, "LOCO_RUN_KEY"), "%s", e.msg);
    setenv("LOCO_RUN_KEY", "short", 1);
    loco_error_clear(&e);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_key_resolve(&cfg, true, key, &have, &e));
    cr_assert(NULL != strstr(e.msg, "at least 16"), "%s", e.msg);
    setenv("LOCO_RUN_KEY", "a passphrase long enough", 1);
    cr_assert_eq(LOCO_OK, loco_key_resolve(&cfg, true, key, &have, NULL));
    char path[] = "/tmp/loco-key-XXXXXX"; /* mkstemp's template: it replaces the X's */
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    const char text[] = "a passphrase long enough\n"; /* the trailing newline does not count */
    cr_assert_eq((ssize_t)sizeof text - 1, write(fd, text, sizeof text - 1));
    close(fd);
    snprintf(cfg.key_file, sizeof cfg.key_file, "%s", path);
    cr_assert_eq(LOCO_OK, loco_key_resolve(&cfg, true, other, &have, NULL));
    cr_assert(0 == memcmp(key, other, 32), "the file and the environment give different keys");
    unlink(path);
    loco_error_clear(&e);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_key_resolve(&cfg, true, other, &have, &e));
    cr_assert(NULL != strstr(e.msg, path), "%s", e.msg);
    unsetenv("LOCO_RUN_KEY");
}
