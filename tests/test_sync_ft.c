/* tests/test_sync_ft.c — optim/sync.h's Failures contract on 4 in-process ranks with the control
 * plane: for every strategy and codec path, a member that crashes (loco_comm_crash: its
 * connections drop as if the process were killed) at step S must leave the survivors with
 * exactly the state they reach when the same member leaves gracefully at a sync point at step S.
 * The survivors recover as sync.h says (quiesce, loco_comm_recover, loco_sync_recovered, repeat
 * the failed call), so a repeat that applied a local update twice, encoded twice into error
 * feedback, divided by the old world size or lost the delayed/fragment average shows as a
 * bit difference.
 */
#include "collectives/membership.h"
#include "optim/sync.h"
#include "test_comm_ranks.h"

#define WORLD 4
#define VICTIM 2
#define STEPS 16
#define EVENT_STEP 6
#define NPARAM 36

typedef enum event_mode {
    EVENT_CRASH = 0, /* the victim's connections drop at EVENT_STEP */
    EVENT_LEAVE = 1, /* the victim leaves at a sync point at EVENT_STEP */
} event_mode;

typedef struct variant {
    const char *name;
    loco_sync_strategy strategy;
    loco_codec_id codec; /* LOCO_CODEC_COUNT: the strategy's default */
    loco_ef_mode ef;
    int delay;
    loco_outer_exchange exchange;
} variant;

typedef struct run {
    const variant *var;
    event_mode mode;
    loco_tensor_table table;
    loco_sync_params sp;
    loco_optim_params op;
    /* outputs per member id */
    float final[WORLD][NPARAM];
    uint64_t digest[WORLD];
    int world_end[WORLD];
    int retries[WORLD];
    loco_membership_counts counts[WORLD];
    loco_status st[WORLD];
    char msg[WORLD][512];
} run;

/* Member `id`'s gradient at step: depends on the member (not its rank, which changes). */
static void gradient(uint32_t id, int step, const float *theta, float *g)
{
    for (size_t i = 0; i < NPARAM; i++) {
        uint32_t r[4];
        loco_rng_block(99, (uint64_t)id * 1000 + (uint64_t)step, i, r);
        g[i] = theta[i] - 0.1f * (float)((id + i) % 5) + (loco_u32_to_unit(r[0]) - 0.5f);
    }
}

/* sync.h's recovery: nothing outstanding, re-form the group, let the strategy follow. */
static loco_status recover(loco_comm_t comm, loco_sync *sync, loco_error *err)
{
    loco_error ignored = {0};
    loco_sync_quiesce(sync, &ignored);
    LOCO_TRY(loco_comm_recover(comm, NULL));
    return loco_sync_recovered(sync, err);
}

/* The strategy's shared buffers as the control plane's state list (at most 8). */
static int shared_state(loco_sync *sync, loco_state_buffer *out)
{
    loco_sync_buffer bufs[16];
    int n = loco_sync_buffers(sync, bufs, 16);
    int k = 0;
    for (int i = 0; i < n && i < 16 && k < 8; i++) {
        if (bufs[i].shared) {
            size_t elem = LOCO_SYNC_F32 == bufs[i].dtype ? sizeof(float) : sizeof(int64_t);
            out[k++] = (loco_state_buffer){bufs[i].name, bufs[i].data, bufs[i].count * elem};
        }
    }
    return k;
}

static void body(rank_slot *slot)
{
    run *R = slot->arg;
    uint32_t id = loco_comm_member_id(slot->comm);
    float params[NPARAM], grads[NPARAM];
    for (size_t i = 0; i < NPARAM; i++) {
        params[i] = 0.05f * (float)i;
    }
    loco_error err = {0};
    loco_optim opt;
    loco_sync *sync = NULL;
    int retries = 0;
    loco_status st = loco_optim_init(&opt, &R->op, NPARAM, &err);
    if (LOCO_OK == st) {
        st = loco_sync_init(&sync, &R->sp, slot->comm, &R->table, params, &err);
    }
    for (int step = 0; LOCO_OK == st && step < STEPS; step++) {
        if (EVENT_STEP == step && EVENT_CRASH == R->mode && VICTIM == id) {
            loco_sync_quiesce(sync, &err); /* what it started completes first, as on a leave */
            loco_comm_crash(slot->comm);
            st = LOCO_ERR_STOPPED;
            break;
        }
        if (EVENT_STEP == step && EVENT_LEAVE == R->mode) {
            st = loco_sync_quiesce(sync, &err);
            loco_state_buffer state[8];
            int n = shared_state(sync, state);
            loco_sync_options o = {.leave = VICTIM == id};
            if (LOCO_OK == st) {
                st = loco_comm_sync_point(slot->comm, (uint64_t)step, state, n, &o, NULL);
            }
            if (LOCO_OK != st) {
                break;
            }
            st = loco_sync_recovered(sync, &err);
        }
        gradient(id, step, params, grads);
        loco_sync_step_in in = {.params = params, .grads = grads, .grads_finite = true,
                                .optim = &opt, .lr = R->op.lr, .step = step};
        loco_sync_step_out out;
        st = loco_sync_step(sync, &in, &out, &err);
        while (LOCO_ERR_PEER_LOST == st && retries++ < 8) {
            st = recover(slot->comm, sync, &err);
            if (LOCO_OK == st) {
                st = loco_sync_step(sync, &in, &out, &err);
            }
        }
    }
    if (LOCO_OK == st) {
        st = loco_sync_finish(sync, params, NULL, &err);
        while (LOCO_ERR_PEER_LOST == st && retries++ < 8) {
            st = recover(slot->comm, sync, &err);
            if (LOCO_OK == st) {
                st = loco_sync_finish(sync, params, NULL, &err);
            }
        }
    }
    if (LOCO_OK == st) {
        memcpy(R->final[id], loco_sync_eval_params(sync, params), sizeof R->final[id]);
        R->digest[id] = loco_sync_shared_digest(sync);
        R->world_end[id] = loco_comm_size(slot->comm);
        loco_ft_totals t;
        loco_comm_get_ft_totals(slot->comm, &t);
        R->counts[id] = t.counts;
    }
    R->retries[id] = retries;
    R->st[id] = st;
    snprintf(R->msg[id], sizeof R->msg[id], "%s", err.msg);
    loco_sync_free(sync);
    loco_optim_free(&opt);
}

static void run_variant(run *R, const variant *var, event_mode mode)
{
    memset(R, 0, sizeof *R);
    R->var = var;
    R->mode = mode;
    cr_assert_eq(LOCO_OK, loco_tensor_table_init(&R->table, 8));
    int64_t emb[2] = {2, 4}, w[2] = {2, 4}, b[1] = {4}, ln[1] = {4};
    loco_tensor_table_add(&R->table, "wte", -1, 2, emb);
    loco_tensor_table_add(&R->table, "h.0.w", 0, 2, w);
    loco_tensor_table_add(&R->table, "h.0.b", 0, 1, b);
    loco_tensor_table_add(&R->table, "h.1.w", 1, 2, w);
    loco_tensor_table_add(&R->table, "h.1.b", 1, 1, b);
    loco_tensor_table_add(&R->table, "ln_f", -1, 1, ln);
    cr_assert_eq((size_t)NPARAM, R->table.numel);
    loco_optim_params_default(&R->op);
    R->op.kind = LOCO_OPTIM_ADAMW;
    R->op.lr = 0.01f;
    R->op.warmup_steps = 0;
    R->op.schedule = LOCO_LR_CONSTANT;
    R->sp = loco_sync_params_default(var->strategy);
    R->sp.h = 4;
    R->sp.delay = var->delay;
    R->sp.exchange = var->exchange;
    R->sp.total_steps = STEPS;
    if (LOCO_CODEC_COUNT != var->codec) {
        R->sp.compress = LOCO_CODEC_NONE != var->codec;
        R->sp.codec = loco_codec_params_default(var->codec);
        R->sp.codec.density = 0.25f;
    }
    R->sp.ef.mode = var->ef;
    loco_comm_config cfg = local_config();
    cfg.heartbeat_s = 0.05;
    cfg.peer_timeout_s = 1.0;
    cfg.ft.op_deadline_s = 5.0;
    cfg.ft.sync_timeout_s = 20;
    rank_slot slots[WORLD];
    run_ranks(WORLD, &cfg, body, R, slots);
    loco_tensor_table_free(&R->table);
    for (int id = 0; id < WORLD; id++) {
        if (VICTIM == id) {
            cr_assert_eq(LOCO_ERR_STOPPED, R->st[id], "%s: the victim: %s", var->name,
                         R->msg[id]);
            continue;
        }
        cr_assert_eq(LOCO_OK, R->st[id], "%s (%s): member %d: %s", var->name,
                     EVENT_CRASH == mode ? "crash" : "leave", id, R->msg[id]);
        cr_assert_eq(WORLD - 1, R->world_end[id], "%s: member %d ends in a world of %d",
                     var->name, id, R->world_end[id]);
        cr_assert_eq(R->digest[0], R->digest[id], "%s: member %d's shared state differs",
                     var->name, id);
        cr_assert_eq(0, memcmp(R->final[0], R->final[id], sizeof R->final[0]),
                     "%s: member %d's parameters differ", var->name, id);
        cr_assert_eq(EVENT_CRASH == mode ? 1u : 0u, R->counts[id].died, "%s", var->name);
        cr_assert_eq(EVENT_LEAVE == mode ? 1u : 0u, R->counts[id].left, "%s", var->name);
    }
}

static void check_variant(const variant *var)
{
    run *crash = calloc(1, sizeof *crash), *leave = calloc(1, sizeof *leave);
    cr_assert_not_null(crash);
    cr_assert_not_null(leave);
    run_variant(crash, var, EVENT_CRASH);
    run_variant(leave, var, EVENT_LEAVE);
    cr_assert(crash->retries[0] >= 1, "%s: the survivors never had to repeat anything",
              var->name);
    for (size_t i = 0; i < NPARAM; i++) {
        cr_assert_eq(leave->final[0][i], crash->final[0][i],
                     "%s: parameter %zu after a crash %.9g, after a leave %.9g", var->name, i,
                     (double)crash->final[0][i], (double)leave->final[0][i]);
    }
    cr_assert_eq(leave->digest[0], crash->digest[0], "%s: shared state after a crash differs",
                 var->name);
    free(crash);
    free(leave);
}

#define VARIANT_TEST(test_name, ...)                                                              \
    Test(sync_ft, test_name, .timeout = 90)                                                       \
    {                                                                                             \
        static const variant v = __VA_ARGS__;                                                     \
        check_variant(&v);                                                                        \
    }

VARIANT_TEST(ddp, {"ddp", LOCO_SYNC_DDP, LOCO_CODEC_NONE, LOCO_EF_NONE, 0, LOCO_EXCHANGE_RING})
VARIANT_TEST(ddp_ring_codec, {"ddp-qsgd", LOCO_SYNC_DDP, LOCO_CODEC_QSGD, LOCO_EF_NONE, 0,
             LOCO_EXCHANGE_RING})
VARIANT_TEST(ddp_topk_ef, {"ddp-topk-ef", LOCO_SYNC_DDP, LOCO_CODEC_TOPK, LOCO_EF_EF, 0,
             LOCO_EXCHANGE_RING})
VARIANT_TEST(ddp_ef21, {"ddp-qsgd-ef21", LOCO_SYNC_DDP, LOCO_CODEC_QSGD, LOCO_EF_EF21, 0,
             LOCO_EXCHANGE_RING})
VARIANT_TEST(diloco, {"diloco", LOCO_SYNC_DILOCO, LOCO_CODEC_NONE, LOCO_EF_NONE, 0,
             LOCO_EXCHANGE_RING})
VARIANT_TEST(diloco_int8, {"diloco-int8", LOCO_SYNC_DILOCO, LOCO_CODEC_MAXMIN, LOCO_EF_NONE, 0,
             LOCO_EXCHANGE_RING})
VARIANT_TEST(diloco_allgather_topk, {"diloco-allgather-topk", LOCO_SYNC_DILOCO, LOCO_CODEC_TOPK,
                                     LOCO_EF_NONE, 0, LOCO_EXCHANGE_ALLGATHER})
VARIANT_TEST(diloco_delay, {"diloco-delay", LOCO_SYNC_DILOCO, LOCO_CODEC_NONE, LOCO_EF_NONE, 1,
             LOCO_EXCHANGE_RING})
VARIANT_TEST(streaming, {"streaming", LOCO_SYNC_STREAMING, LOCO_CODEC_COUNT, LOCO_EF_NONE, 0,
             LOCO_EXCHANGE_RING})
VARIANT_TEST(demo, {"demo", LOCO_SYNC_DEMO, LOCO_CODEC_COUNT, LOCO_EF_NONE, 0, LOCO_EXCHANGE_RING})
