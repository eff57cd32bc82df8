/* tests/test_comm.c — collectives/ over the in-process backend (threads, real TCP on loopback):
 * allreduce against a double-precision reference and bit-identical across ranks, allgatherv,
 * broadcast, barrier, asynchronous overlap, failures (stall, lost peer) and bad input.
 *
 * Each test runs `world` threads; every thread forms a communicator in one loco_local_group and
 * runs the test body. Threads record what they saw; the main thread asserts afterwards
 * (Criterion's asserts belong on the test's own thread).
 */
#include "collectives/comm.h"
#include "collectives/comm_impl.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_RANKS 8

typedef struct rank_slot rank_slot;
typedef void (*rank_body)(rank_slot *slot);

struct rank_slot {
    int rank, world;
    loco_comm_config cfg;
    loco_comm_t comm;
    loco_status init_status;
    loco_error init_err;
    rank_body body;
    void *arg;
    /* results the body leaves for the main thread */
    loco_status st[16];
    loco_op_info info[16];
    double seconds[16];
    void *out;
    uint64_t digest[16];
};

static void *rank_thread(void *p)
{
    rank_slot *slot = p;
    slot->init_status = loco_comm_init(&slot->comm, &slot->cfg, &slot->init_err);
    if (LOCO_OK == slot->init_status) {
        slot->body(slot);
        loco_comm_free(slot->comm);
    }
    return NULL;
}

static loco_comm_config local_config(void)
{
    loco_comm_config cfg = LOCO_COMM_CONFIG_INIT;
    cfg.bootstrap = LOCO_BOOTSTRAP_LOCAL;
    cfg.connect_timeout_s = 20;
    cfg.streams = 2;
    cfg.chunk_bytes = 64 * 1024;
    cfg.result_digest = true;
    return cfg;
}

/* Run body on `world` ranks; cfg is each rank's template (bootstrap/local/rank are set here). */
static void run_ranks(int world, const loco_comm_config *cfg, rank_body body, void *arg,
                      rank_slot *slots)
{
    loco_local_group *group = NULL;
    cr_assert_eq(LOCO_OK, loco_local_group_init(&group, world, NULL));
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < world; r++) {
        memset(&slots[r], 0, sizeof slots[r]);
        slots[r].rank = r;
        slots[r].world = world;
        slots[r].cfg = *cfg;
        slots[r].cfg.bootstrap = LOCO_BOOTSTRAP_LOCAL;
        slots[r].cfg.local = group;
        slots[r].cfg.rank = r;
        slots[r].body = body;
        slots[r].arg = arg;
        pthread_create(&th[r], NULL, rank_thread, &slots[r]);
    }
    for (int r = 0; r < world; r++) {
        pthread_join(th[r], NULL);
    }
    loco_local_group_free(group);
    for (int r = 0; r < world; r++) {
        cr_assert_eq(LOCO_OK, slots[r].init_status, "rank %d init: %s", r, slots[r].init_err.msg);
    }
}

/* Deterministic inputs: rank r's element i. */
static float input_value(int rank, size_t i)
{
    uint32_t out[4];
    loco_rng_block(1234, (uint64_t)rank, i, out);
    return (loco_u32_to_unit(out[0]) - 0.5f) * 4.0f;
}

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
