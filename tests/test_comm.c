/* tests/test_comm.c — collectives/ over the in-process backend (threads, real TCP on loopback):
 * allreduce against a double-precision reference and bit-identical across ranks, allgatherv,
 * broadcast, barrier, asynchronous overlap, failures (stall, lost peer) and bad input.
 *
 * Each test runs `world` threads (test_comm_ranks.h); the main thread asserts afterwards.
 */
#include "test_comm_ranks.h"

#include <math.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- allreduce ------------------------------------------------------------------------------ */

typedef struct allreduce_case {
    size_t count;
    loco_dtype dtype;
    loco_reduce_op op;
    bool in_place;
} allreduce_case;

static void body_allreduce(rank_slot *s)
{
    const allreduce_case *c = s->arg;
    size_t esize = loco_dtype_size(c->dtype);
    uint8_t *send = malloc(c->count * esize + 1);
    uint8_t *recv = c->in_place ? send : malloc(c->count * esize + 1);
    for (size_t i = 0; i < c->count; i++) {
        float v = input_value(s->rank, i);
        if (LOCO_DTYPE_F32 == c->dtype) {
            ((float *)send)[i] = v;
        } else {
            ((uint16_t *)send)[i] = loco_f32_to_bf16(v);
        }
    }
    uint8_t *copy = malloc(c->count * esize + 1);
    memcpy(copy, send, c->count * esize);
    s->st[0] = loco_allreduce(s->comm, send, recv, c->count, c->dtype, c->op, &s->info[0]);
    if (!c->in_place) { /* out of place: sendbuf is never written */
        s->st[1] = memcmp(copy, send, c->count * esize) ? LOCO_ERR_INTERNAL : LOCO_OK;
        free(send);
    }
    free(copy);
    s->out = recv;
}

static void check_allreduce(int world, const allreduce_case *c)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(world, &cfg, body_allreduce, (void *)c, slots);
    size_t esize = loco_dtype_size(c->dtype);
    for (int r = 0; r < world; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0], "world %d count %zu rank %d: %s", world, c->count,
                     r, slots[r].info[0].error);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d: out-of-place sendbuf was modified", r);
        cr_assert(0 == c->count || 0 == memcmp(slots[0].out, slots[r].out, c->count * esize),
                  "world %d count %zu: rank %d's result differs from rank 0's", world, c->count,
                  r);
        cr_assert_eq(slots[0].info[0].digest, slots[r].info[0].digest);
    }
    double worst = 0;
    for (size_t i = 0; i < c->count; i++) {
        double ref = 0, mag = 0;
        for (int r = 0; r < world; r++) {
            double x = LOCO_DTYPE_F32 == c->dtype
                           ? (double)input_value(r, i)
                           : (double)loco_bf16_to_f32(loco_f32_to_bf16(input_value(r, i)));
            ref += x;
            mag += fabs(x);
        }
        if (LOCO_REDUCE_AVG == c->op) {
            ref /= world;
            mag /= world;
        }
        double got = LOCO_DTYPE_F32 == c->dtype
                         ? (double)((float *)slots[0].out)[i]
                         : (double)loco_bf16_to_f32(((uint16_t *)slots[0].out)[i]);
        /* each of the world-1 additions (and the division) rounds once */
        double ulp = LOCO_DTYPE_F32 == c->dtype ? 0x1p-24 : 0x1p-8;
        double tol = (world + 1) * ulp * mag + 1e-30;
        double err = fabs(got - ref);
        cr_assert(err <= tol, "world %d count %zu element %zu: got %.9g want %.9g (err %.3g > %.3g)",
                  world, c->count, i, got, ref, err, tol);
        worst = err / tol > worst ? err / tol : worst;
    }
    for (int r = 0; r < world; r++) {
        free(slots[r].out);
    }
}

Test(comm, allreduce_f32_sum_matches_double_reference_and_is_bit_identical, .timeout = 120)
{
    static const size_t sizes[] = {0, 1, 7, 1000, 65536 / 4 * 3 + 5, 200003};
    for (int world = 1; world <= 4; world++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            allreduce_case c = {.count = sizes[k], .dtype = LOCO_DTYPE_F32, .op = LOCO_REDUCE_SUM};
            check_allreduce(world, &c);
        }
    }
}

Test(comm, allreduce_avg_in_place_and_bf16, .timeout = 120)
{
    allreduce_case avg = {.count = 100001, .dtype = LOCO_DTYPE_F32, .op = LOCO_REDUCE_AVG,
                          .in_place = true};
    check_allreduce(3, &avg);
    allreduce_case bf16 = {.count = 70001, .dtype = LOCO_DTYPE_BF16, .op = LOCO_REDUCE_SUM};
    check_allreduce(4, &bf16);
    allreduce_case bf16avg = {.count = 5, .dtype = LOCO_DTYPE_BF16, .op = LOCO_REDUCE_AVG,
                              .in_place = true};
    check_allreduce(2, &bf16avg);
}

/* ---- allgatherv ----------------------------------------------------------------------------- */

typedef struct gather_case {
    size_t counts[MAX_RANKS];
    bool in_place_rank1;
} gather_case;

static uint8_t gather_byte(int rank, size_t i) { return (uint8_t)(rank * 37 + i * 11 + 1); }

static void body_allgatherv(rank_slot *s)
{
    const gather_case *c = s->arg;
    size_t displs[MAX_RANKS], total = 0;
    for (int r = 0; r < s->world; r++) {
        displs[r] = total + 3; /* gaps between blocks must stay untouched */
        total += c->counts[r] + 3;
    }
    uint8_t *recv = malloc(total + 1);
    memset(recv, 0xEE, total + 1);
    uint8_t *send = c->in_place_rank1 && 1 == s->rank ? recv + displs[1]
                                                        : malloc(c->counts[s->rank] + 1);
    for (size_t i = 0; i < c->counts[s->rank]; i++) {
        send[i] = gather_byte(s->rank, i);
    }
    s->st[0] = loco_allgatherv(s->comm, send, c->counts[s->rank], recv, c->counts, displs,
                               LOCO_DTYPE_BYTE, &s->info[0]);
    s->st[1] = LOCO_OK;
    for (int r = 0; r < s->world; r++) {
        for (size_t i = 0; i < c->counts[r]; i++) {
            if (recv[displs[r] + i] != gather_byte(r, i)) {
                s->st[1] = LOCO_ERR_INTERNAL;
            }
        }
        for (size_t g = displs[r] - 3; g < displs[r]; g++) {
            if (0xEE != recv[g]) {
                s->st[1] = LOCO_ERR_RANGE;
            }
        }
    }
    if (!(c->in_place_rank1 && 1 == s->rank)) {
        free(send);
    }
    free(recv);
}

static void check_allgatherv(int world, const gather_case *c)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(world, &cfg, body_allgatherv, (void *)c, slots);
    for (int r = 0; r < world; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0], "rank %d: %s", r, slots[r].info[0].error);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d gathered wrong bytes (%d)", r,
                     slots[r].st[1]);
        cr_assert_eq(slots[0].info[0].digest, slots[r].info[0].digest);
    }
}

Test(comm, allgatherv_uneven_empty_and_in_place, .timeout = 60)
{
    gather_case uneven = {.counts = {5, 0, 200001, 1}, .in_place_rank1 = false};
    check_allgatherv(4, &uneven);
    gather_case in_place = {.counts = {70000, 65536, 3}, .in_place_rank1 = true};
    check_allgatherv(3, &in_place);
    gather_case empty = {.counts = {0, 0, 0}};
    check_allgatherv(3, &empty);
    gather_case alone = {.counts = {9}};
    check_allgatherv(1, &alone);
}

/* The sparse-update pattern: members do not know each other's sizes, so they allgather the
 * sizes first, then the payloads. */
static void body_sizes_then_payloads(rank_slot *s)
{
    uint64_t mine = (uint64_t)(s->rank * 1000 + 3), sizes[MAX_RANKS];
    s->st[0] = loco_allgather(s->comm, &mine, 8, sizes, LOCO_DTYPE_BYTE, &s->info[0]);
    size_t counts[MAX_RANKS], displs[MAX_RANKS], total = 0;
    for (int r = 0; r < s->world && LOCO_OK == s->st[0]; r++) {
        counts[r] = (size_t)sizes[r];
        displs[r] = total;
        total += counts[r];
    }
    uint8_t *send = malloc(mine), *recv = malloc(total + 1);
    for (size_t i = 0; i < mine; i++) {
        send[i] = gather_byte(s->rank, i);
    }
    if (LOCO_OK == s->st[0]) {
        s->st[1] = loco_allgatherv(s->comm, send, mine, recv, counts, displs, LOCO_DTYPE_BYTE,
                                   &s->info[1]);
    }
    for (int r = 0; r < s->world && LOCO_OK == s->st[1]; r++) {
        for (size_t i = 0; i < counts[r]; i++) {
            s->st[2] |= recv[displs[r] + i] != gather_byte(r, i) ? LOCO_ERR_INTERNAL : LOCO_OK;
        }
    }
    free(send);
    free(recv);
}

Test(comm, allgather_sizes_then_allgatherv_payloads, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(3, &cfg, body_sizes_then_payloads, NULL, slots);
    for (int r = 0; r < 3; r++) {
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(LOCO_OK, slots[r].st[k], "rank %d step %d: %s", r, k,
                         slots[r].info[k].error);
        }
    }
}

/* ---- broadcast and barrier ------------------------------------------------------------------ */

static void body_broadcast(rank_slot *s)
{
    size_t n = 100003;
    float *buf = malloc(n * sizeof *buf);
    for (int root = 0; root < s->world; root++) {
        for (size_t i = 0; i < n; i++) {
            buf[i] = s->rank == root ? input_value(root, i) : -1.0f;
        }
        s->st[root] = loco_broadcast(s->comm, buf, n, LOCO_DTYPE_F32, root, &s->info[root]);
        for (size_t i = 0; i < n && LOCO_OK == s->st[root]; i++) {
            if (buf[i] != input_value(root, i)) {
                s->st[root] = LOCO_ERR_INTERNAL;
            }
        }
    }
    free(buf);
}

Test(comm, broadcast_from_every_root, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(4, &cfg, body_broadcast, NULL, slots);
    for (int r = 0; r < 4; r++) {
        for (int root = 0; root < 4; root++) {
            cr_assert_eq(LOCO_OK, slots[r].st[root], "rank %d root %d: %s (%d)", r, root,
                         slots[r].info[root].error, slots[r].st[root]);
        }
    }
}

static void body_barrier(rank_slot *s)
{
    usleep((useconds_t)(s->rank * 60000));
    s->seconds[0] = loco_now_s(); /* entered */
    s->st[0] = loco_barrier(s->comm, &s->info[0]);
    s->seconds[1] = loco_now_s(); /* left */
}

Test(comm, barrier_waits_for_the_last_member, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(4, &cfg, body_barrier, NULL, slots);
    double last_entry = 0;
    for (int r = 0; r < 4; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0], "rank %d: %s", r, slots[r].info[0].error);
        last_entry = slots[r].seconds[0] > last_entry ? slots[r].seconds[0] : last_entry;
    }
    for (int r = 0; r < 4; r++) {
        cr_assert(slots[r].seconds[1] >= last_entry, "rank %d left the barrier %.3f s before "
                  "the last member entered", r, last_entry - slots[r].seconds[1]);
    }
}

/* ---- asynchronous operations ---------------------------------------------------------------- */

static void body_async(rank_slot *s)
{
    size_t n = 1 << 21; /* 8 MiB */
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)s->rank;
        b[i] = 1.0f;
        c[i] = s->rank == 1 ? 7.0f : 0.0f;
    }
    /* overlap: the loop thread moves bytes while this thread computes */
    loco_request_t req = NULL;
    s->st[0] = loco_iallreduce(s->comm, a, a, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &req);
    double spins = 0;
    bool done = false;
    while (LOCO_OK == s->st[0] && !done) {
        for (int k = 0; k < 1000; k++) {
            spins += sqrt((double)k);
        }
        s->st[0] = loco_test(&req, &done, &s->info[0]);
        s->seconds[0] += 1;
    }
    /* several outstanding operations, waited for out of order */
    loco_request_t r1 = NULL, r2 = NULL, r3 = NULL;
    s->st[1] = loco_iallreduce(s->comm, b, b, n, LOCO_DTYPE_F32, LOCO_REDUCE_AVG, &r1);
    s->st[2] = loco_ibroadcast(s->comm, c, n, LOCO_DTYPE_F32, 1, &r2);
    s->st[3] = loco_ibarrier(s->comm, &r3);
    s->st[3] = LOCO_OK == s->st[3] ? loco_wait(&r3, &s->info[3]) : s->st[3];
    s->st[2] = LOCO_OK == s->st[2] ? loco_wait(&r2, &s->info[2]) : s->st[2];
    s->st[1] = LOCO_OK == s->st[1] ? loco_wait(&r1, &s->info[1]) : s->st[1];
    float want = (float)(s->world * (s->world - 1) / 2);
    for (size_t i = 0; i < n; i++) {
        if (a[i] != want || b[i] != 1.0f || c[i] != 7.0f) {
            s->st[4] = LOCO_ERR_INTERNAL;
            break;
        }
    }
    s->seconds[1] = spins;
    free(a);
    free(b);
    free(c);
}

Test(comm, async_operations_overlap_and_complete_in_order, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(3, &cfg, body_async, NULL, slots);
    for (int r = 0; r < 3; r++) {
        for (int k = 0; k < 5; k++) {
            cr_assert_eq(LOCO_OK, slots[r].st[k], "rank %d op %d: %s", r, k, slots[r].info[k].error);
        }
        cr_assert_eq(1, slots[r].info[1].seq - slots[r].info[0].seq, "sequence numbers");
        cr_assert(slots[r].seconds[0] > 1, "rank %d: the caller got no chance to compute while "
                  "the allreduce ran (%g polls)", r, slots[r].seconds[0]);
    }
}

/* ---- failures ------------------------------------------------------------------------------- */

/* Rank 2 arrives too late: the others give up after op_timeout_s (progress deadline), and rank
 * 2 finds the epoch broken. Inputs stay intact. */
static void body_straggler(rank_slot *s)
{
    size_t n = 50000;
    float *x = malloc(n * sizeof *x), *copy = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        x[i] = copy[i] = input_value(s->rank, i);
    }
    if (2 == s->rank) {
        usleep(2500000);
    }
    double t0 = loco_now_s();
    s->st[0] = loco_allreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[0]);
    s->seconds[0] = loco_now_s() - t0;
    s->st[1] = memcmp(x, copy, n * sizeof *x) ? LOCO_ERR_INTERNAL : LOCO_OK;
    s->st[2] = loco_barrier(s->comm, &s->info[2]); /* the epoch stays broken */
    free(x);
    free(copy);
}

Test(comm, progress_deadline_aborts_everyone_with_inputs_intact, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    cfg.op_timeout_s = 1.0;
    cfg.heartbeat_s = 0.1;
    run_ranks(3, &cfg, body_straggler, NULL, slots);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(LOCO_ERR_PEER_LOST, slots[r].st[0], "rank %d: status %d", r, slots[r].st[0]);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d: in-place input not restored", r);
        cr_assert_eq(LOCO_ERR_PEER_LOST, slots[r].st[2], "rank %d: barrier after the abort", r);
        cr_assert(strlen(slots[r].info[0].error) > 10, "rank %d: no message", r);
    }
    for (int r = 0; r < 2; r++) {
        cr_assert(slots[r].seconds[0] > 0.9 && slots[r].seconds[0] < 2.4,
                  "rank %d gave up after %.2f s (deadline 1 s)", r, slots[r].seconds[0]);
        cr_assert(NULL != strstr(slots[r].info[0].error, "no progress"), "rank %d: %s", r,
                  slots[r].info[0].error);
        cr_assert_eq(2, slots[r].info[0].lost_rank, "rank %d blamed rank %d: %s", r,
                     slots[r].info[0].lost_rank, slots[r].info[0].error);
    }
    cr_assert(slots[2].seconds[0] < 0.5, "the late rank must fail at once, took %.2f s",
              slots[2].seconds[0]);
}

/* Rank 1 "dies" mid-allreduce: its sockets are torn down under it (what the kernel does to a
 * killed process). Survivors fail within the deadline, never succeed, inputs intact. */
static void body_peer_dies(rank_slot *s)
{
    size_t n = 4 << 20; /* 16 MiB */
    float *x = malloc(n * sizeof *x), *copy = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        x[i] = copy[i] = (float)(s->rank + 1);
    }
    loco_request_t req = NULL;
    double t0 = loco_now_s();
    s->st[0] = loco_iallreduce(s->comm, x, x, n, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &req);
    if (1 == s->rank) {
        usleep(5000);
        for (int i = 0; i < s->comm->nconns; i++) { /* RST every connection */
            if (s->comm->conns[i].fd >= 0) {
                struct linger lg = {.l_onoff = 1, .l_linger = 0};
                setsockopt(s->comm->conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                shutdown(s->comm->conns[i].fd, SHUT_RDWR);
            }
        }
    }
    if (LOCO_OK == s->st[0]) {
        s->st[0] = loco_wait(&req, &s->info[0]);
    } else { /* the epoch broke before this rank started: the reason is the comm's error */
        loco_copy_str(s->info[0].error, sizeof s->info[0].error, loco_comm_error(s->comm));
    }
    s->seconds[0] = loco_now_s() - t0;
    s->st[1] = 1 == s->rank || 0 == memcmp(x, copy, n * sizeof *x) ? LOCO_OK : LOCO_ERR_INTERNAL;
    free(x);
    free(copy);
}

Test(comm, lost_peer_mid_allreduce_fails_every_survivor, .timeout = 60)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    cfg.chunk_bytes = 1 << 20;
    run_ranks(4, &cfg, body_peer_dies, NULL, slots);
    for (int r = 0; r < 4; r++) {
        if (1 == r) {
            continue;
        }
        cr_assert_eq(LOCO_ERR_PEER_LOST, slots[r].st[0], "rank %d: status %d (%s)", r,
                     slots[r].st[0], slots[r].info[0].error);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d: input not intact", r);
        cr_assert(slots[r].seconds[0] < 3.0, "rank %d took %.2f s", r, slots[r].seconds[0]);
        cr_assert(NULL != strstr(slots[r].info[0].error, "rank"), "rank %d: message '%s' names "
                  "no peer", r, slots[r].info[0].error);
    }
}

/* ---- accounting ----------------------------------------------------------------------------- */

static void body_accounting(rank_slot *s)
{
    float x[1000];
    for (int i = 0; i < 1000; i++) {
        x[i] = 1.0f;
    }
    s->st[0] = loco_allreduce(s->comm, x, x, 1000, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[0]);
    s->st[1] = loco_allreduce(s->comm, x, x, 1000, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &s->info[1]);
    loco_comm_totals *t = s->out = calloc(1, sizeof *t);
    loco_comm_get_totals(s->comm, t);
}

/* World 3, 1000 floats: blocks of 334, 333, 333 elements, one chunk each. Rank 0 sends blocks
 * 0, 2 (reduce-scatter) and 1, 0 (allgather) = 1334 floats in 4 frames, and receives blocks
 * 2, 1, 0, 2 = 1333 floats in 4 frames. */
Test(comm, bytes_are_accounted_exactly_per_operation_and_in_totals, .timeout = 30)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    run_ranks(3, &cfg, body_accounting, NULL, slots);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0]);
        cr_assert_eq(LOCO_OK, slots[r].st[1]);
    }
    const loco_op_info *i = &slots[0].info[0];
    cr_assert_eq(i->payload_sent, 1334 * 4, "payload sent %llu", (unsigned long long)i->payload_sent);
    cr_assert_eq(i->payload_received, 1333 * 4);
    cr_assert_eq(i->bytes_sent, 1334 * 4 + 4 * LOCO_FRAME_HEADER_BYTES);
    cr_assert_eq(i->bytes_received, 1333 * 4 + 4 * LOCO_FRAME_HEADER_BYTES);
    cr_assert_eq(i->kind, LOCO_OP_ALLREDUCE);
    cr_assert_eq(i->world, 3);
    cr_assert(i->duration_s > 0);
    const loco_comm_totals *t = slots[0].out;
    cr_assert_eq(t->ops, 2);
    cr_assert_eq(t->ops_failed, 0);
    cr_assert_eq(t->payload_sent, 2 * 1334 * 4);
    cr_assert(t->bytes_sent > t->payload_sent, "totals count handshakes and heartbeats too");
    for (int r = 0; r < 3; r++) {
        free(slots[r].out);
    }
}
