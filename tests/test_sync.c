/* tests/test_sync.c — optim/sync.h: known answers of the sync strategies on in-process ranks
 * (threads over real loopback TCP, LOCO_BOOTSTRAP_LOCAL): outer Nesterov, FedAvg, DiLoCo's
 * special cases (one worker, H = 1 with SGD and with AdamW), the pseudo-gradient's sign, the
 * one-round delay, Streaming DiLoCo (P = 1 == DiLoCo, mixing alpha, tau rejected), DeMo (chunk
 * sizes, full top-k == signSGD), QSR, and identical shared state on every worker after every
 * sync for every strategy and codec path. */
#include "compress/dct.h"
#include "optim/sync.h"
#include "test_comm_ranks.h"

#include <math.h>

#define MAX_STEPS 64

/* A tiny "model": a tensor table over a flat buffer and a gradient rule. */
typedef enum grad_rule {
    GRAD_CONST,     /* g = c[rank] (every element) */
    GRAD_QUADRATIC, /* g = theta - c[rank] (elementwise) */
    GRAD_NOISY,     /* g = theta - c[rank] + noise(rank, step, i) */
} grad_rule;

typedef struct sim {
    /* inputs */
    int world, steps;
    loco_sync_params sp;
    loco_optim_params op;
    const float *lr_per_step; /* NULL: op.lr every step */
    loco_tensor_table table;
    float init[64];
    grad_rule rule;
    float c[MAX_RANKS];
    bool inner_done; /* clip + inner step here, as a GPU worker does, then inner_done */
    bool delta_encoder; /* with inner_done: encode diloco's Delta here, as a GPU worker does */
    bool update_by_caller; /* ddp: the strategy averages, the clip and step happen here (GPU) */
    /* outputs, per rank */
    float trace[MAX_RANKS][MAX_STEPS][64]; /* replica after each step */
    float global_trace[MAX_RANKS][MAX_STEPS][64]; /* eval params after each step */
    float final[MAX_RANKS][64];                   /* replica after finish */
    uint64_t digests[MAX_RANKS][MAX_STEPS];       /* shared digest after each synced step */
    int synced_at[MAX_RANKS][MAX_STEPS];          /* steps (1-based) that synced */
    int n_synced[MAX_RANKS];
    int uses_mismatch[MAX_RANKS]; /* inner_done: steps whose uses_params disagreed with a sync
                                     or whose poisoned params the strategy touched */
    int encoder_calls[MAX_RANKS]; /* delta_encoder: messages this worker encoded itself */
    loco_status st[MAX_RANKS];
    char msg[MAX_RANKS][512];
} sim;

/* A table: "x" (n elements) alone, or a 2-block model for streaming. */
static void table_flat(sim *s, int n)
{
    cr_assert_eq(LOCO_OK, loco_tensor_table_init(&s->table, 1));
    int64_t dims[1] = {n};
    loco_tensor_table_add(&s->table, "x", -1, 1, dims);
}

static void table_blocks(sim *s)
{
    cr_assert_eq(LOCO_OK, loco_tensor_table_init(&s->table, 8));
    int64_t emb[2] = {2, 4}, w[2] = {2, 3}, b[1] = {3}, ln[1] = {2};
    loco_tensor_table_add(&s->table, "wte", -1, 2, emb);
    loco_tensor_table_add(&s->table, "h.0.w", 0, 2, w);
    loco_tensor_table_add(&s->table, "h.0.b", 0, 1, b);
    loco_tensor_table_add(&s->table, "h.1.w", 1, 2, w);
    loco_tensor_table_add(&s->table, "h.1.b", 1, 1, b);
    loco_tensor_table_add(&s->table, "ln_f", -1, 1, ln);
}

static void sgd_params(loco_optim_params *op, float lr)
{
    loco_optim_params_default(op);
    op->kind = LOCO_OPTIM_SGD;
    op->lr = lr;
    op->min_lr = 0;
    op->momentum = 0;
    op->nesterov = false;
    op->weight_decay = 0;
    op->warmup_steps = 0;
    op->schedule = LOCO_LR_CONSTANT;
    op->grad_clip = 0;
}

static void adamw_params(loco_optim_params *op, float lr)
{
    sgd_params(op, lr);
    op->kind = LOCO_OPTIM_ADAMW;
    op->beta1 = 0.9f;
    op->beta2 = 0.95f;
    op->eps = 1e-8f;
}

static float noise(int rank, int step, size_t i)
{
    uint32_t out[4];
    loco_rng_block(77, (uint64_t)rank * 1000 + (uint64_t)step, i, out);
    return loco_u32_to_unit(out[0]) - 0.5f;
}

static void gradient(const sim *s, int rank, int step, const float *theta, float *g)
{
    for (size_t i = 0; i < s->table.numel; i++) {
        switch (s->rule) {
        case GRAD_CONST: g[i] = s->c[rank]; break;
        case GRAD_QUADRATIC: g[i] = theta[i] - s->c[rank] * (float)(i + 1); break;
        case GRAD_NOISY: g[i] = theta[i] - s->c[rank] * (float)(i + 1) + noise(rank, step, i); break;
        }
    }
}

/* Every byte of p (n floats) still 0xff? */
static bool poison_intact(const float *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n * sizeof(float); i++) {
        if (0xff != b[i]) {
            return false;
        }
    }
    return true;
}

/* The sim's stand-in for a GPU worker's pseudo-gradient encoder (src/train_device.c): the
 * replica it reads is the worker's own (the "device" copy), never what the strategy was handed. */
typedef struct sim_encoder {
    const float *replica;
    size_t n;
    int calls;
} sim_encoder;

static loco_status sim_encode_delta(void *ctx, const float *global, uint64_t global_version,
                                    const loco_codec *codec, const loco_codec_ctx *cctx,
                                    uint8_t *out, size_t cap, size_t *len, loco_error *err)
{
    sim_encoder *e = ctx;
    float delta[64];
    for (size_t i = 0; i < e->n; i++) {
        delta[i] = global[i] - e->replica[i];
    }
    e->calls++;
    return loco_codec_encode_ex(codec, NULL, delta, e->n, cctx, out, cap, len, err);
}

static void sim_body(rank_slot *slot)
{
    sim *s = slot->arg;
    int r = slot->rank;
    size_t n = s->table.numel;
    float params[64], grads[64];
    memcpy(params, s->init, n * sizeof(float));
    loco_error err = {0};
    loco_optim opt;
    loco_sync *sync = NULL;
    loco_status st = loco_optim_init(&opt, &s->op, n, &err);
    if (LOCO_OK == st) {
        st = loco_sync_init(&sync, &s->sp, slot->comm, &s->table, params, &err);
    }
    sim_encoder enc_state = {params, n, 0};
    loco_sync_delta_encoder encoder = {&enc_state, sim_encode_delta};
    for (int step = 0; LOCO_OK == st && step < s->steps; step++) {
        gradient(s, r, step, params, grads);
        loco_sync_step_in in = {
            .params = params,
            .grads = grads,
            .grads_finite = true,
            .optim = &opt,
            .lr = NULL != s->lr_per_step ? s->lr_per_step[step] : s->op.lr,
            .step = step,
        };
        loco_sync_step_out out;
        float poison[64];
        bool uses = true;
        if (s->inner_done) { /* what train_device.c does on the GPU */
            st = loco_grad_clip(grads, n, s->op.grad_clip, &in.inner_grad_norm, &err);
            if (LOCO_OK == st) {
                st = loco_optim_step(&opt, params, grads, in.lr, &s->table, &err);
            }
            in.inner_done = true;
            in.grads = NULL;
            uses = loco_sync_step_uses_params(sync, step);
            if (s->delta_encoder) {
                in.delta_encoder = &encoder;
            }
            if (!uses || s->delta_encoder) { /* the replica stays "on the device": hand the
                                                strategy garbage (NaN) it must not read */
                memset(poison, 0xff, sizeof poison);
                in.params = poison;
            }
        }
        in.update_by_caller = s->update_by_caller;
        if (LOCO_OK == st) {
            st = loco_sync_step(sync, &in, &out, &err);
        }
        if (LOCO_OK == st && s->update_by_caller) { /* what train_device.c does on the GPU */
            loco_error clip_err = {0};
            double norm = NAN;
            loco_status cs = loco_grad_clip(grads, n, s->op.grad_clip, &norm, &clip_err);
            if (LOCO_OK == cs) {
                st = loco_optim_step(&opt, params, grads, in.lr, &s->table, &err);
            } else if (LOCO_ERR_NONFINITE != cs) {
                st = cs;
            }
        }
        /* diloco touches the replica exactly at its syncs; streaming also reads it where a
         * fragment is prepared (tau steps before that fragment's sync) */
        bool exact = LOCO_SYNC_STREAMING != s->sp.strategy;
        bool wrong = exact ? uses != out.synced : (!uses && out.synced);
        if (s->inner_done && (wrong || (!uses && !poison_intact(poison, n)))) {
            s->uses_mismatch[r]++;
        }
        if (s->delta_encoder && uses) { /* the round end wrote theta_global: "upload" it */
            memcpy(params, poison, n * sizeof(float));
        }
        memcpy(s->trace[r][step], params, n * sizeof(float));
        memcpy(s->global_trace[r][step], loco_sync_eval_params(sync, params), n * sizeof(float));
        if (LOCO_OK == st && out.synced) {
            s->digests[r][s->n_synced[r]] = loco_sync_shared_digest(sync);
            s->synced_at[r][s->n_synced[r]++] = step + 1;
        }
    }
    if (LOCO_OK == st) {
        st = loco_sync_finish(sync, params, NULL, &err);
        memcpy(s->final[r], params, n * sizeof(float));
    }
    s->encoder_calls[r] = enc_state.calls;
    s->st[r] = st;
    snprintf(s->msg[r], sizeof s->msg[r], "%s", err.msg);
    loco_sync_free(sync);
    loco_optim_free(&opt);
}

/* Run the simulation on s->world in-process ranks and require every rank to succeed. */
static void sim_run(sim *s)
{
    s->sp.total_steps = s->steps;
    loco_comm_config cfg = local_config();
    rank_slot slots[MAX_RANKS];
    run_ranks(s->world, &cfg, sim_body, s, slots);
    for (int r = 0; r < s->world; r++) {
        cr_assert_eq(LOCO_OK, s->st[r], "rank %d: %s", r, s->msg[r]);
    }
}

static sim *sim_new(int world, int steps, loco_sync_strategy strategy)
{
    sim *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->world = world;
    s->steps = steps;
    s->sp = loco_sync_params_default(strategy);
    return s;
}

/* Noisy gradients towards per-worker centers c0, c1, c2 (the heterogeneous quadratic several
 * tests share), parameters starting at 0.1 i. */
static void sim_noisy(sim *s, float c0, float c1, float c2)
{
    s->rule = GRAD_NOISY;
    s->c[0] = c0;
    s->c[1] = c1;
    s->c[2] = c2;
    for (size_t i = 0; i < s->table.numel; i++) {
        s->init[i] = 0.1f * (float)i;
    }
}

static void sim_free(sim *s)
{
    loco_tensor_table_free(&s->table);
    free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Outer optimizer and DiLoCo's special cases */

static const double k_nesterov[5] = {-1.33, -3.227, -5.6343, -8.50087, -11.780783};

Test(sync, outer_nesterov_known_answer)
{
    float theta = 0, b = 0, delta = 1;
    for (int t = 0; t < 5; t++) {
        loco_outer_sgd_step(&theta, &b, &delta, 1, 0.7f, 0.9f, true);
        cr_assert(fabs(theta - k_nesterov[t]) < 2e-5, "round %d: %.7f, want %.7f", t + 1, theta,
                  k_nesterov[t]);
    }
    /* the same through the strategy: H = 1, inner SGD lr 1 on g = 1 gives Delta = 1 */
    sim *s = sim_new(2, 5, LOCO_SYNC_DILOCO);
    table_flat(s, 1);
    sgd_params(&s->op, 1.0f);
    s->sp.h = 1;
    s->rule = GRAD_CONST;
    s->c[0] = s->c[1] = 1.0f;
    sim_run(s);
    for (int r = 0; r < 2; r++) {
        for (int t = 0; t < 5; t++) {
            cr_assert(fabs(s->global_trace[r][t][0] - k_nesterov[t]) < 2e-5,
                      "rank %d round %d: %.7f, want %.7f", r, t + 1, s->global_trace[r][t][0],
                      k_nesterov[t]);
        }
    }
    sim_free(s);
}

/* FedAvg (outer lr 1, mu 0) of 4 workers on a quadratic ends at the exact mean of the replicas,
 * by the ring (fp32) or by the allgather exchange with a lossless codec (top-k keeping
 * everything: every worker's message reached every worker, once). */
static void fedavg_exact_mean(bool allgather)
{
    sim *s = sim_new(4, 3, LOCO_SYNC_DILOCO);
    table_flat(s, 5);
    sgd_params(&s->op, 0.5f);
    s->sp.h = 3;
    s->sp.outer_lr = 1.0f;
    s->sp.outer_momentum = 0.0f;
    if (allgather) {
        s->sp.exchange = LOCO_EXCHANGE_ALLGATHER;
        s->sp.compress = true;
        s->sp.codec = loco_codec_params_default(LOCO_CODEC_TOPK);
        s->sp.codec.density = 1.0f;
    }
    s->rule = GRAD_QUADRATIC;
    for (int r = 0; r < 4; r++) {
        s->c[r] = (float)(r + 1) * 0.25f;
    }
    for (int i = 0; i < 5; i++) {
        s->init[i] = (float)i - 2.0f;
    }
    sim_run(s);
    /* each replica's own trajectory, computed here; FedAvg = their exact mean */
    for (int i = 0; i < 5; i++) {
        float sum = 0;
        for (int r = 0; r < 4; r++) {
            float x = s->init[i];
            for (int k = 0; k < 3; k++) {
                x -= 0.5f * (x - s->c[r] * (float)(i + 1));
            }
            sum += x;
        }
        for (int r = 0; r < 4; r++) {
            cr_assert_eq(s->final[r][i], sum / 4.0f, "%s rank %d element %d: %.9g, want %.9g",
                         allgather ? "allgather" : "ring", r, i, s->final[r][i], sum / 4.0f);
        }
    }
    sim_free(s);
}

Test(sync, fedavg_is_the_exact_mean)
{
    fedavg_exact_mean(false);
}

Test(sync, allgather_fedavg_is_the_exact_mean)
{
    fedavg_exact_mean(true);
}

/* A GPU worker with sync.exchange allgather encodes Delta itself (the strategy never reads the
 * replica): theta_global, the replicas and the shared digests must equal, bit for bit, the run
 * where the strategy encodes Delta from the replica, for a stochastic quantizer and top-k. */
static void compare_delta_encoder(loco_codec_id id)
{
    sim *runs[2];
    for (int k = 0; k < 2; k++) {
        sim *s = sim_new(3, 14, LOCO_SYNC_DILOCO);
        table_flat(s, 16);
        adamw_params(&s->op, 0.05f);
        s->sp.h = 4;
        s->sp.exchange = LOCO_EXCHANGE_ALLGATHER;
        s->sp.compress = true;
        s->sp.codec = loco_codec_params_default(id);
        s->sp.codec.density = 0.25f;
        sim_noisy(s, 0.5f, -0.25f, 1.5f);
        s->inner_done = 1 == k;
        s->delta_encoder = 1 == k;
        sim_run(s);
        runs[k] = s;
    }
    const char *name = loco_codec_name(id);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(runs[1]->uses_mismatch[r], 0, "%s rank %d: the strategy touched the replica",
                     name, r);
        cr_assert_eq(runs[0]->encoder_calls[r], 0);
        cr_assert_eq(runs[1]->encoder_calls[r], runs[1]->n_synced[r],
                     "%s rank %d: %d encodes for %d syncs", name, r, runs[1]->encoder_calls[r],
                     runs[1]->n_synced[r]);
        cr_assert_eq(runs[0]->n_synced[r], runs[1]->n_synced[r]);
        cr_assert(runs[0]->n_synced[r] >= 3, "%d syncs", runs[0]->n_synced[r]);
        for (int i = 0; i < runs[0]->n_synced[r]; i++) {
            cr_assert_eq(runs[0]->digests[r][i], runs[1]->digests[r][i], "%s sync %d", name, i);
            cr_assert_eq(runs[0]->digests[r][i], runs[0]->digests[0][i], "%s sync %d", name, i);
        }
        cr_assert_eq(0, memcmp(runs[0]->global_trace[r], runs[1]->global_trace[r],
                               sizeof runs[0]->global_trace[r]),
                     "%s rank %d: theta_global differs", name, r);
        cr_assert_eq(0, memcmp(runs[0]->final[r], runs[1]->final[r], 16 * sizeof(float)),
                     "%s rank %d: final replicas differ", name, r);
    }
    sim_free(runs[0]);
    sim_free(runs[1]);
}

Test(sync, allgather_delta_encoder_is_bit_identical)
{
    compare_delta_encoder(LOCO_CODEC_MAXMIN);
    compare_delta_encoder(LOCO_CODEC_TOPK);
}

Test(sync, one_worker_fedavg_is_plain_training)
{
    sim *s = sim_new(1, 12, LOCO_SYNC_DILOCO);
    table_flat(s, 4);
    adamw_params(&s->op, 0.05f);
    s->sp.h = 4;
    s->sp.outer_lr = 1.0f;
    s->sp.outer_momentum = 0.0f;
    s->rule = GRAD_QUADRATIC;
    s->c[0] = 0.7f;
    sim_run(s);
    loco_optim opt;
    cr_assert_eq(LOCO_OK, loco_optim_init(&opt, &s->op, 4, NULL));
    float x[4] = {0}, g[4];
    for (int t = 0; t < 12; t++) {
        gradient(s, 0, t, x, g);
        loco_optim_step(&opt, x, g, s->op.lr, NULL, NULL);
        for (int i = 0; i < 4; i++) {
            cr_assert(fabs(s->trace[0][t][i] - x[i]) <= 1e-6f * (1 + fabsf(x[i])),
                      "step %d element %d: %.9g vs plain %.9g", t + 1, i, s->trace[0][t][i], x[i]);
        }
    }
    loco_optim_free(&opt);
    sim_free(s);
}

Test(sync, h1_inner_sgd_is_data_parallel_nesterov)
{
    const float eta = 0.1f, a = 0.7f, mu = 0.9f;
    sim *s = sim_new(2, 8, LOCO_SYNC_DILOCO);
    table_flat(s, 3);
    sgd_params(&s->op, eta);
    s->sp.h = 1;
    s->sp.outer_lr = a;
    s->sp.outer_momentum = mu;
    s->rule = GRAD_QUADRATIC;
    s->c[0] = 1.0f;
    s->c[1] = -0.5f;
    sim_run(s);
    /* synchronous DP Nesterov SGD with lr a * eta on the mean gradient */
    double x[3] = {0}, buf[3] = {0};
    for (int t = 0; t < 8; t++) {
        for (int i = 0; i < 3; i++) {
            double gbar = 0.5 * ((x[i] - 1.0 * (i + 1)) + (x[i] + 0.5 * (i + 1)));
            buf[i] = mu * buf[i] + gbar;
            x[i] -= (double)a * eta * (gbar + mu * buf[i]);
            cr_assert(fabs(s->trace[0][t][i] - x[i]) < 1e-5, "step %d element %d: %.7f vs %.7f",
                      t + 1, i, s->trace[0][t][i], x[i]);
        }
    }
    sim_free(s);
}

Test(sync, h1_inner_adamw_is_not_dp_adamw)
{
    const float lr = 0.01f;
    sim *s = sim_new(2, 1, LOCO_SYNC_DILOCO);
    table_flat(s, 1);
    adamw_params(&s->op, lr);
    s->sp.h = 1;
    s->sp.outer_lr = 1.0f;
    s->sp.outer_momentum = 0.0f;
    s->rule = GRAD_CONST;
    s->c[0] = 1.0f;
    s->c[1] = -3.0f;
    sim_run(s);
    /* DP-AdamW steps on the mean gradient -1: theta moves by about +lr */
    loco_optim opt;
    cr_assert_eq(LOCO_OK, loco_optim_init(&opt, &s->op, 1, NULL));
    float x = 0, g = -1.0f;
    loco_optim_step(&opt, &x, &g, lr, NULL, NULL);
    loco_optim_free(&opt);
    cr_assert(fabsf(x - lr) < 1e-3f * lr, "DP-AdamW moved %.7g, want about +%g", x, lr);
    /* DiLoCo: worker steps of about -lr and +lr cancel */
    float moved = s->final[0][0];
    cr_assert(fabsf(moved) < 1e-3f * lr, "DiLoCo H=1 AdamW moved %.7g, want about 0", moved);
    cr_assert(fabsf(moved - x) > 0.9f * lr, "DiLoCo must differ from DP-AdamW");
    sim_free(s);
}

Test(sync, pseudo_gradient_sign_descends)
{
    /* f(x) = x: g = 1; after one round theta_global (and f) went down */
    sim *s = sim_new(2, 4, LOCO_SYNC_DILOCO);
    table_flat(s, 1);
    sgd_params(&s->op, 0.1f);
    s->sp.h = 4;
    s->rule = GRAD_CONST;
    s->c[0] = s->c[1] = 1.0f;
    s->init[0] = 3.0f;
    sim_run(s);
    cr_assert_eq(s->n_synced[0], 1);
    /* Delta = 0.4 > 0; Nesterov's first step moves (1 + mu) lr Delta = 1.9 * 0.7 * 0.4 */
    cr_assert(fabsf(s->final[0][0] - (3.0f - 1.9f * 0.7f * 0.4f)) < 1e-5f, "theta %.7f",
              s->final[0][0]);
    cr_assert(s->final[0][0] < 3.0f);
    sim_free(s);
}

Test(sync, delay_applies_each_average_one_round_late)
{
    /* SGD lr 1 on g = 1 and 3, H = 2: each round's mean Delta is 4; outer lr 1, mu 0 */
    static const float want_plain[6] = {0, -4, -4, -8, -8, -12};
    static const float want_delay[6] = {0, 0, 0, -4, -4, -8};
    for (int delay = 0; delay <= 1; delay++) {
        sim *s = sim_new(2, 6, LOCO_SYNC_DILOCO);
        table_flat(s, 1);
        sgd_params(&s->op, 1.0f);
        s->sp.h = 2;
        s->sp.delay = delay;
        s->sp.outer_lr = 1.0f;
        s->sp.outer_momentum = 0.0f;
        s->rule = GRAD_CONST;
        s->c[0] = 1.0f;
        s->c[1] = 3.0f;
        sim_run(s);
        const float *want = delay ? want_delay : want_plain;
        for (int t = 0; t < 6; t++) {
            cr_assert_eq(s->global_trace[0][t][0], want[t], "delay %d step %d: %g, want %g",
                         delay, t + 1, s->global_trace[0][t][0], want[t]);
        }
        /* with delay, the replica restarts every round from the latest theta_global */
        if (delay) {
            cr_assert_eq(s->trace[1][3][0], -4.0f);
        }
        cr_assert_eq(s->final[0][0], -12.0f, "delay %d: final %g (finish applies the last)",
                     delay, s->final[0][0]);
        sim_free(s);
    }
}

Test(sync, qsr_round_lengths)
{
    cr_assert_eq(loco_qsr_h(4, 0.0175, 0.008), 4);
    cr_assert_eq(loco_qsr_h(4, 0.0175, 0.004), 19);
    cr_assert_eq(loco_qsr_h(4, 0.0175, 0.001), 306);
    cr_assert_eq(loco_qsr_h(4, 0.0175, 1e-4), 30625);
    /* the same from float learning rates, as the schedule produces them */
    cr_assert_eq(loco_qsr_h(4, 0.0175f, 0.004f), 19);
    cr_assert_eq(loco_qsr_h(4, 0.0175f, 0.001f), 306);
    cr_assert_eq(loco_qsr_h(4, 0.0175f, 1e-4f), 30625);
    /* in the strategy: H recomputed only right after a sync, clipped by the run's end */
    static float lrs[60];
    for (int t = 0; t < 60; t++) {
        lrs[t] = t < 30 ? 0.004f : 0.001f;
    }
    sim *s = sim_new(2, 60, LOCO_SYNC_DILOCO);
    table_flat(s, 1);
    sgd_params(&s->op, 0.004f);
    s->lr_per_step = lrs;
    s->sp.h = 4;
    s->sp.h_schedule = LOCO_H_QSR;
    s->sp.qsr_alpha = 0.0175f;
    s->rule = GRAD_CONST;
    s->c[0] = s->c[1] = 1.0f;
    sim_run(s);
    static const int want[4] = {4, 23, 42, 60};
    cr_assert_eq(s->n_synced[0], 4, "%d syncs", s->n_synced[0]);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s->synced_at[0][i], want[i], "sync %d at step %d, want %d", i,
                     s->synced_at[0][i], want[i]);
    }
    sim_free(s);
}

Test(sync, ddp_is_large_batch_sgd)
{
    sim *s = sim_new(3, 6, LOCO_SYNC_DDP);
    table_flat(s, 4);
    sgd_params(&s->op, 0.1f);
    s->rule = GRAD_QUADRATIC;
    s->c[0] = 1.0f;
    s->c[1] = -2.0f;
    s->c[2] = 0.5f;
    sim_run(s);
    double x[4] = {0};
    for (int t = 0; t < 6; t++) {
        for (int i = 0; i < 4; i++) {
            double gbar = x[i] - (1.0 - 2.0 + 0.5) / 3.0 * (i + 1);
            x[i] -= 0.1 * gbar;
            for (int r = 0; r < 3; r++) {
                cr_assert(fabs(s->trace[r][t][i] - x[i]) < 1e-5, "rank %d step %d: %.7f vs %.7f",
                          r, t + 1, s->trace[r][t][i], x[i]);
            }
        }
    }
    sim_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Streaming DiLoCo */

Test(sync, streaming_p1_tau0_equals_diloco)
{
    sim *a = sim_new(2, 12, LOCO_SYNC_DILOCO);
    sim *b = sim_new(2, 12, LOCO_SYNC_STREAMING);
    table_blocks(a);
    table_blocks(b);
    adamw_params(&a->op, 0.02f);
    b->op = a->op;
    a->sp.h = b->sp.h = 4;
    b->sp.fragments = 1;
    b->sp.overlap = 0;
    b->sp.mix_alpha = 0.0f;
    b->sp.compress = false;
    a->rule = b->rule = GRAD_NOISY;
    a->c[0] = b->c[0] = 0.3f;
    a->c[1] = b->c[1] = -0.2f;
    sim_run(a);
    sim_run(b);
    size_t n = a->table.numel;
    for (int r = 0; r < 2; r++) {
        for (int t = 0; t < 12; t++) {
            cr_assert_eq(0, memcmp(a->trace[r][t], b->trace[r][t], n * sizeof(float)),
                         "rank %d step %d: streaming P=1 tau=0 differs from DiLoCo", r, t + 1);
        }
        cr_assert_eq(0, memcmp(a->final[r], b->final[r], n * sizeof(float)));
    }
    cr_assert_eq(b->n_synced[0], 3);
    sim_free(a);
    sim_free(b);
}

Test(sync, streaming_mix_alpha)
{
    /* P = 1, H = 2, tau = 1: the pseudo-gradient leaves after step 1 and lands after step 2,
     * when the replica has trained one more step. SGD lr 1, g = 1 and 3, outer lr 1, mu 0:
     * Delta = mean(1, 3) = 2, theta_global = -2; replicas before mixing: -2 and -6. */
    static const float want[2][2] = {{-2.0f, -2.0f}, {-2.0f, -4.0f}};
    for (int k = 0; k < 2; k++) {
        sim *s = sim_new(2, 2, LOCO_SYNC_STREAMING);
        table_blocks(s);
        sgd_params(&s->op, 1.0f);
        s->sp.h = 2;
        s->sp.fragments = 1;
        s->sp.overlap = 1;
        s->sp.mix_alpha = 0 == k ? 0.0f : 0.5f;
        s->sp.outer_lr = 1.0f;
        s->sp.outer_momentum = 0.0f;
        s->sp.compress = false;
        s->rule = GRAD_CONST;
        s->c[0] = 1.0f;
        s->c[1] = 3.0f;
        sim_run(s);
        for (int r = 0; r < 2; r++) {
            for (size_t i = 0; i < s->table.numel; i++) {
                cr_assert_eq(s->trace[r][1][i], want[k][r], "alpha %g rank %d: %g, want %g",
                             (double)s->sp.mix_alpha, r, s->trace[r][1][i], want[k][r]);
                cr_assert_eq(s->global_trace[r][1][i], -2.0f);
            }
        }
        sim_free(s);
    }
}

Test(sync, streaming_fragments_take_turns)
{
    /* P = 2, H = 4: one fragment every 2 steps, alternating; each syncs once per H */
    sim *s = sim_new(2, 8, LOCO_SYNC_STREAMING);
    table_blocks(s);
    sgd_params(&s->op, 0.1f);
    s->sp.h = 4;
    s->sp.fragments = 2;
    s->sp.overlap = 1;
    s->rule = GRAD_NOISY;
    s->c[0] = 1.0f;
    s->c[1] = 2.0f;
    sim_run(s);
    static const int want[4] = {2, 4, 6, 8};
    cr_assert_eq(s->n_synced[0], 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(s->synced_at[0][i], want[i]);
    }
    /* strided: block 0 (+ wte) is fragment 0, block 1 (+ ln_f) fragment 1. After the first
     * sync (fragment 0) block 1's global values are still the initial ones. */
    int h1 = loco_tensor_table_find(&s->table, "h.1.w");
    int h0 = loco_tensor_table_find(&s->table, "h.0.w");
    size_t off1 = s->table.tensors[h1].offset, off0 = s->table.tensors[h0].offset;
    cr_assert_eq(s->global_trace[0][1][off1], 0.0f);
    cr_assert_neq(s->global_trace[0][1][off0], 0.0f);
    cr_assert_neq(s->global_trace[0][3][off1], 0.0f);
    sim_free(s);
}

Test(sync, inconsistent_settings_are_rejected)
{
    loco_error err = {0};
    loco_sync_params p = loco_sync_params_default(LOCO_SYNC_STREAMING);
    p.h = 4;
    p.fragments = 2;
    p.overlap = 2; /* tau >= H/P */
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&p, &err));
    cr_assert(NULL != strstr(err.msg, "sync.overlap"), "%s", err.msg);
    p.overlap = 1;
    cr_assert_eq(LOCO_OK, loco_sync_params_validate(&p, NULL));
    p.h = 5; /* P does not divide H */
    loco_error_clear(&err);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&p, &err));
    cr_assert(NULL != strstr(err.msg, "not divisible"), "%s", err.msg);
    /* a sparse codec cannot ride the ring under diloco */
    loco_sync_params d = loco_sync_params_default(LOCO_SYNC_DILOCO);
    d.compress = true;
    d.codec = loco_codec_params_default(LOCO_CODEC_TOPK);
    loco_error_clear(&err);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&d, &err));
    cr_assert(NULL != strstr(err.msg, "does not fit"), "%s", err.msg);
    /* ... but travels by the allgather exchange, which refuses stateful codecs, no codec,
     * the delay, and other strategies */
    d.exchange = LOCO_EXCHANGE_ALLGATHER;
    loco_error_clear(&err);
    cr_assert_eq(LOCO_OK, loco_sync_params_validate(&d, &err), "%s", err.msg);
    d.codec = loco_codec_params_default(LOCO_CODEC_DGC);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&d, &err));
    cr_assert(NULL != strstr(err.msg, "sync.exchange allgather"), "%s", err.msg);
    d.codec = loco_codec_params_default(LOCO_CODEC_MAXMIN);
    d.delay = 1;
    loco_error_clear(&err);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&d, &err));
    cr_assert(NULL != strstr(err.msg, "sync.delay"), "%s", err.msg);
    d.delay = 0;
    d.compress = false;
    loco_error_clear(&err);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&d, &err));
    cr_assert(NULL != strstr(err.msg, "needs a codec"), "%s", err.msg);
    loco_sync_params x = loco_sync_params_default(LOCO_SYNC_DDP);
    x.exchange = LOCO_EXCHANGE_ALLGATHER;
    loco_error_clear(&err);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&x, &err));
    cr_assert(NULL != strstr(err.msg, "sync.exchange"), "%s", err.msg);
    /* demo needs dct_topk; DGC under EF; delay outside diloco */
    loco_sync_params m = loco_sync_params_default(LOCO_SYNC_DEMO);
    m.codec = loco_codec_params_default(LOCO_CODEC_FP4);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&m, NULL));
    loco_sync_params g = loco_sync_params_default(LOCO_SYNC_DDP);
    g.compress = true;
    g.codec = loco_codec_params_default(LOCO_CODEC_DGC);
    g.ef.mode = LOCO_EF_EF;
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&g, NULL));
    g.ef.mode = LOCO_EF_NONE;
    cr_assert_eq(LOCO_OK, loco_sync_params_validate(&g, NULL));
    g.delay = 1;
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_params_validate(&g, NULL));
    /* more fragments than blocks; several workers without a strategy */
    sim *s = sim_new(1, 1, LOCO_SYNC_STREAMING);
    table_blocks(s);
    p.h = 6;
    p.fragments = 3;
    p.overlap = 0;
    loco_error_clear(&err);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_check_setup(&p, 2, &s->table, &err));
    cr_assert(NULL != strstr(err.msg, "transformer blocks"), "%s", err.msg);
    loco_sync_params none = loco_sync_params_default(LOCO_SYNC_NONE);
    cr_assert_eq(LOCO_ERR_CONFIG, loco_sync_check_setup(&none, 4, &s->table, NULL));
    cr_assert_eq(LOCO_OK, loco_sync_check_setup(&none, 1, &s->table, NULL));
    sim_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * DeMo */

Test(sync, demo_chunk_sizes)
{
    static const size_t dims[7] = {2048, 50304, 50257, 1000, 96, 7, 67};
    static const size_t want[7] = {64, 64, 29, 50, 48, 7, 1};
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(loco_dct_chunk(dims[i]), want[i], "dim %zu: chunk %zu, want %zu", dims[i],
                     loco_dct_chunk(dims[i]), want[i]);
    }
}

Test(sync, demo_full_topk_one_worker_is_signsgd)
{
    /* chunks of the 2x4, 2x3, 3 and 2 tensors hold at most 8 coefficients: top-8 keeps all */
    sim *s = sim_new(1, 6, LOCO_SYNC_DEMO);
    table_blocks(s);
    sgd_params(&s->op, 0.01f);
    s->sp.codec.chunk_topk = 8;
    s->rule = GRAD_NOISY;
    s->c[0] = 1.0f;
    for (size_t i = 0; i < s->table.numel; i++) {
        s->init[i] = 0.37f * (float)i;
    }
    sim_run(s);
    float x[64], g[64];
    memcpy(x, s->init, sizeof x);
    for (int t = 0; t < 6; t++) {
        gradient(s, 0, t, x, g);
        for (size_t i = 0; i < s->table.numel; i++) {
            x[i] -= 0.01f * (g[i] > 0 ? 1.0f : -1.0f);
            cr_assert_eq(s->trace[0][t][i], x[i], "step %d element %zu: %.9g vs signSGD %.9g",
                         t + 1, i, s->trace[0][t][i], x[i]);
        }
    }
    sim_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Every strategy and codec path: identical shared state on every worker after every sync */

typedef struct variant {
    const char *name;
    loco_sync_strategy strategy;
    loco_codec_id codec; /* LOCO_CODEC_COUNT: the strategy's default */
    int bits;
    loco_ef_mode ef;
    int delay;
} variant;

/* A GPU worker's path (train.device cuda): the caller clips and steps the inner optimizer itself
 * and hands loco_sync_step the replica only where loco_sync_step_uses_params says so. DiLoCo
 * (plain, 8-bit ring codec, one-round delay) must give bit-identical replicas, theta_global and
 * shared digests to the strategy doing the inner update; the replica passed on other steps must
 * stay untouched. */
static void compare_inner_done(loco_sync_strategy strategy, int delay, bool codec)
{
    sim *runs[2];
    for (int k = 0; k < 2; k++) {
        sim *s = sim_new(2, 13, strategy);
        if (LOCO_SYNC_STREAMING == strategy) { /* 2 fragments of blocks, tau 1, FP4 */
            table_blocks(s);
        } else {
            table_flat(s, 16);
        }
        adamw_params(&s->op, 0.05f);
        s->op.grad_clip = 2.0f;
        s->sp.h = 4;
        s->sp.delay = delay;
        if (codec) {
            s->sp.compress = true;
            s->sp.codec = loco_codec_params_default(LOCO_CODEC_MAXMIN);
            s->sp.codec.bits = 8;
        }
        sim_noisy(s, 0.5f, -0.25f, 0.0f);
        s->inner_done = 1 == k;
        sim_run(s);
        runs[k] = s;
    }
    size_t n = runs[0]->table.numel;
    for (int r = 0; r < 2; r++) {
        cr_assert_eq(runs[1]->uses_mismatch[r], 0, "rank %d: %d steps where uses_params was "
                     "wrong or the strategy touched the replica", r, runs[1]->uses_mismatch[r]);
        cr_assert_eq(runs[0]->n_synced[r], runs[1]->n_synced[r]);
        cr_assert(runs[0]->n_synced[r] >= 3, "%d syncs", runs[0]->n_synced[r]);
        for (int i = 0; i < runs[0]->n_synced[r]; i++) {
            cr_assert_eq(runs[0]->digests[r][i], runs[1]->digests[r][i], "sync %d digest", i);
        }
        cr_assert_eq(0, memcmp(runs[0]->final[r], runs[1]->final[r], n * sizeof(float)),
                     "rank %d: final replicas differ", r);
        cr_assert_eq(0, memcmp(runs[0]->global_trace[r], runs[1]->global_trace[r],
                               sizeof runs[0]->global_trace[r]),
                     "rank %d: theta_global differs", r);
    }
    sim_free(runs[0]);
    sim_free(runs[1]);
}

Test(sync, inner_done_diloco_is_bit_identical)
{
    compare_inner_done(LOCO_SYNC_DILOCO, 0, false);
    compare_inner_done(LOCO_SYNC_DILOCO, 0, true);
    compare_inner_done(LOCO_SYNC_DILOCO, 1, false);
}

Test(sync, inner_done_streaming_is_bit_identical)
{
    compare_inner_done(LOCO_SYNC_STREAMING, 0, false);
}

/* A GPU ddp worker (train.device cuda): the strategy averages the gradient (raw, compressed
 * ring, or allgather with error feedback) and the caller clips and steps; replicas and shared
 * state must equal, bit for bit, the strategy doing the inner update itself. */
static void compare_update_by_caller(loco_codec_id id, loco_ef_mode ef)
{
    sim *runs[2];
    for (int k = 0; k < 2; k++) {
        sim *s = sim_new(3, 10, LOCO_SYNC_DDP);
        table_flat(s, 16);
        adamw_params(&s->op, 0.05f);
        s->op.grad_clip = 1.5f;
        if (LOCO_CODEC_NONE != id) {
            s->sp.compress = true;
            s->sp.codec = loco_codec_params_default(id);
            s->sp.codec.density = 0.25f;
        }
        s->sp.ef.mode = ef;
        sim_noisy(s, 0.5f, -0.25f, 1.5f);
        s->update_by_caller = 1 == k;
        sim_run(s);
        runs[k] = s;
    }
    const char *name = loco_codec_name(id);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(0, memcmp(runs[0]->trace[r], runs[1]->trace[r], sizeof runs[0]->trace[r]),
                     "%s rank %d: replicas differ", name, r);
        cr_assert_eq(0, memcmp(runs[0]->final[r], runs[1]->final[r], 16 * sizeof(float)),
                     "%s rank %d: final replicas differ", name, r);
        cr_assert_eq(0, memcmp(runs[1]->final[r], runs[1]->final[0], 16 * sizeof(float)),
                     "%s rank %d: replicas differ between workers", name, r);
    }
    cr_assert(0 != memcmp(runs[1]->final[0], runs[1]->init, 16 * sizeof(float)),
              "%s: nothing was trained", name);
    sim_free(runs[0]);
    sim_free(runs[1]);
}

Test(sync, ddp_update_by_caller_is_bit_identical)
{
    compare_update_by_caller(LOCO_CODEC_NONE, LOCO_EF_NONE);
    compare_update_by_caller(LOCO_CODEC_QSGD, LOCO_EF_NONE);
    compare_update_by_caller(LOCO_CODEC_TOPK, LOCO_EF_EF);
}

Test(sync, inner_done_only_where_the_gradient_stays_local)
{
    cr_assert(loco_sync_accepts_inner_done(LOCO_SYNC_NONE));
    cr_assert(loco_sync_accepts_inner_done(LOCO_SYNC_DILOCO));
    cr_assert_not(loco_sync_accepts_inner_done(LOCO_SYNC_DDP));
    cr_assert(loco_sync_accepts_inner_done(LOCO_SYNC_STREAMING));
    cr_assert_not(loco_sync_accepts_inner_done(LOCO_SYNC_DEMO));
    loco_tensor_table table;
    cr_assert_eq(LOCO_OK, loco_tensor_table_init(&table, 1));
    int64_t dims[1] = {4};
    loco_tensor_table_add(&table, "x", -1, 1, dims);
    float params[4] = {1, 2, 3, 4};
    loco_optim_params op;
    sgd_params(&op, 0.1f);
    loco_optim opt;
    cr_assert_eq(LOCO_OK, loco_optim_init(&opt, &op, 4, NULL));
    loco_sync_params sp = loco_sync_params_default(LOCO_SYNC_DDP);
    loco_sync *sync = NULL;
    loco_error err = {0};
    cr_assert_eq(LOCO_OK, loco_sync_init(&sync, &sp, NULL, &table, params, &err), "%s", err.msg);
    cr_assert(loco_sync_step_uses_params(sync, 0));
    loco_sync_step_in in = {params, NULL, true, &opt, 0.1f, 0, true, 1.0, NULL, false};
    loco_sync_step_out out;
    cr_assert_eq(LOCO_ERR_INVALID_ARG, loco_sync_step(sync, &in, &out, &err));
    cr_assert(NULL != strstr(err.msg, "allowed: none, diloco"), "%s", err.msg);
    loco_sync_free(sync);
    /* none never touches the replica with inner_done; a non-finite norm counts as skipped */
    sp = loco_sync_params_default(LOCO_SYNC_NONE);
    cr_assert_eq(LOCO_OK, loco_sync_init(&sync, &sp, NULL, &table, params, &err), "%s", err.msg);
    cr_assert_not(loco_sync_step_uses_params(sync, 0));
    in.inner_grad_norm = NAN;
    cr_assert_eq(LOCO_OK, loco_sync_step(sync, &in, &out, &err));
    cr_assert(out.skipped);
    in.inner_grad_norm = 3.5;
    cr_assert_eq(LOCO_OK, loco_sync_step(sync, &in, &out, &err));
    cr_assert_not(out.skipped);
    cr_assert_eq(out.grad_norm, 3.5);
    cr_assert_eq(params[0], 1.0f);
    loco_sync_free(sync);
    loco_optim_free(&opt);
    loco_tensor_table_free(&table);
}

Test(sync, identical_state_after_every_sync)
{
    static const variant variants[] = {
        {"ddp", LOCO_SYNC_DDP, LOCO_CODEC_NONE, 0, LOCO_EF_NONE, 0},
        {"ddp-topk-ef", LOCO_SYNC_DDP, LOCO_CODEC_TOPK, 0, LOCO_EF_EF, 0},
        {"ddp-ternary", LOCO_SYNC_DDP, LOCO_CODEC_TERNARY, 0, LOCO_EF_NONE, 0},
        {"ddp-qsgd-ef21", LOCO_SYNC_DDP, LOCO_CODEC_QSGD, 4, LOCO_EF_EF21, 0},
        {"ddp-dgc", LOCO_SYNC_DDP, LOCO_CODEC_DGC, 0, LOCO_EF_NONE, 0},
        {"ddp-powersgd", LOCO_SYNC_DDP, LOCO_CODEC_POWERSGD, 0, LOCO_EF_EF, 0},
        {"diloco", LOCO_SYNC_DILOCO, LOCO_CODEC_NONE, 0, LOCO_EF_NONE, 0},
        {"diloco-int8", LOCO_SYNC_DILOCO, LOCO_CODEC_MAXMIN, 8, LOCO_EF_NONE, 0},
        {"diloco-delay", LOCO_SYNC_DILOCO, LOCO_CODEC_NONE, 0, LOCO_EF_NONE, 1},
        {"streaming", LOCO_SYNC_STREAMING, LOCO_CODEC_COUNT, 0, LOCO_EF_NONE, 0},
        {"demo", LOCO_SYNC_DEMO, LOCO_CODEC_COUNT, 0, LOCO_EF_NONE, 0},
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const variant *var = &variants[v];
        sim *s = sim_new(3, 16, var->strategy);
        table_blocks(s);
        adamw_params(&s->op, 0.01f);
        s->sp.h = 4;
        s->sp.delay = var->delay;
        if (LOCO_CODEC_COUNT != var->codec) {
            s->sp.compress = LOCO_CODEC_NONE != var->codec;
            s->sp.codec = loco_codec_params_default(var->codec);
            if (var->bits > 0) {
                s->sp.codec.bits = var->bits;
            }
            s->sp.codec.density = 0.25f;
            s->sp.codec.rank = 1;
        }
        s->sp.ef.mode = var->ef;
        sim_noisy(s, 0.5f, -1.0f, 2.0f);
        sim_run(s);
        cr_assert(s->n_synced[0] >= 4, "%s: %d syncs", var->name, s->n_synced[0]);
        size_t n = s->table.numel;
        for (int r = 1; r < 3; r++) {
            cr_assert_eq(s->n_synced[r], s->n_synced[0], "%s", var->name);
            for (int k = 0; k < s->n_synced[0]; k++) {
                cr_assert_eq(s->digests[r][k], s->digests[0][k],
                             "%s: rank %d's shared state differs after sync %d", var->name, r,
                             k + 1);
            }
            for (int t = 0; t < s->steps; t++) {
                cr_assert_eq(0, memcmp(s->global_trace[r][t], s->global_trace[0][t],
                                       n * sizeof(float)),
                             "%s: rank %d's evaluated parameters differ at step %d", var->name,
                             r, t + 1);
            }
            cr_assert_eq(0, memcmp(s->final[r], s->final[0], n * sizeof(float)),
                         "%s: rank %d ends different", var->name, r);
        }
        /* and training moved the parameters */
        bool moved = false;
        for (size_t i = 0; i < n; i++) {
            moved = moved || s->final[0][i] != s->init[i];
        }
        cr_assert(moved, "%s: nothing changed", var->name);
        sim_free(s);
    }
}
