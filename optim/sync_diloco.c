/* optim/sync_diloco.c — strategy "diloco" (Douillard et al. 2023), with the one-round delay
 * option (sync.delay: 1) and the QSR round-length schedule (Gu et al. 2024).
 *
 * Round t: H inner steps from theta_global on the replica (inner optimizer state kept), then
 *     Delta_i = theta_global - theta_i                 (points like a gradient)
 *     Delta   = mean_i Delta_i                         (allreduce AVG, optionally a ring codec)
 *     theta_global = OuterSGD(theta_global, Delta)     (loco_outer_sgd_step, fp32)
 *     theta_i = theta_global                           (every replica restarts from it)
 * With delay 1 the allreduce of round t's Delta runs asynchronously while round t+1 trains; at
 * the end of round t+1 the average of round t is applied (one round stale) and round t+1's is
 * started. Every round begins from the latest theta_global, so the first two rounds both start
 * from the initial weights; loco_sync_finish applies the last average.
 * Rounds end after H steps or at the run's last step (sync_params.total_steps), whichever comes
 * first. QSR: after each sync H = loco_qsr_h(H_base, alpha, lr), H_base during warm-up.
 * After a lost member (sync.h, Failures) a repeated step skips the inner update and redoes the
 * sync from Delta_i (theta_global and the replica are unchanged until the average lands); the
 * delayed average, if it was lost, is started again by loco_sync_recovered.
 * sync.exchange allgather (sync.h): Delta_i is encoded once (by the caller's delta encoder when
 * it gives one, else here), the messages are all-gathered, and every worker decodes them in
 * rank order into Delta = sum_i decode(msg_i) / W, so theta_global stays bit-identical.
 */
#include "optim/sync_impl.h"

#include <stdlib.h>
#include <string.h>

enum { PENDING_NONE = 0, PENDING_IN_FLIGHT = 1, PENDING_ARRIVED = 2 };

/* The schedule, one shared I64 buffer. */
enum { SCHED_ROUND_START, SCHED_H, SCHED_ROUNDS, SCHED_PENDING, SCHED_COUNT };

typedef struct diloco_state {
    float *global;           /* (n) theta_global, shared */
    float *momentum;         /* (n) outer momentum, shared; NULL when mu == 0 */
    float *delta[2];         /* (n) pseudo-gradients; with delay delta[1] is the one pending */
    int64_t sched[SCHED_COUNT];
    int64_t steps_done;      /* steps this worker has run (the next step's index) */
    sync_async pending;      /* delay: the allreduce of delta[1] in flight (or lost) */
    bool allgather;          /* sync.exchange allgather: x carries the messages */
    sync_exchange x;
    uint64_t global_version; /* bumped whenever global changes (loco_sync_global_version) */
} diloco_state;

static loco_status diloco_init(loco_sync *s, const float *params_init, loco_error *err)
{
    diloco_state *d = calloc(1, sizeof *d);
    if (NULL == d) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "diloco: out of memory");
    }
    s->impl = d;
    size_t bytes = s->n * sizeof(float);
    d->global = loco_alloc_aligned(bytes);
    d->delta[0] = loco_alloc_aligned(bytes);
    d->delta[1] = loco_alloc_aligned(bytes);
    if (s->p.outer_momentum > 0.0f) {
        d->momentum = loco_alloc_aligned(bytes);
    }
    if (NULL == d->global || NULL == d->delta[0] || NULL == d->delta[1] ||
        (s->p.outer_momentum > 0.0f && NULL == d->momentum)) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "diloco: cannot allocate %zu bytes", 4 * bytes);
    }
    memcpy(d->global, params_init, bytes);
    memset(d->delta[0], 0, bytes); /* delta[1] is shared state before the first average lands */
    memset(d->delta[1], 0, bytes);
    d->sched[SCHED_H] = s->p.h;
    d->global_version = 1;
    d->allgather = LOCO_EXCHANGE_ALLGATHER == s->p.exchange && NULL != s->codec;
    if (d->allgather) {
        LOCO_TRY(sync_exchange_init(s, false, NULL, &d->x, err));
    }
    return LOCO_OK;
}

static void diloco_free(loco_sync *s)
{
    diloco_state *d = s->impl;
    if (NULL == d) {
        return;
    }
    if (NULL != d->pending.req) {
        loco_wait(&d->pending.req, NULL); /* buffers belong to the operation until it ends */
    }
    free(d->global);
    free(d->momentum);
    free(d->delta[0]);
    free(d->delta[1]);
    sync_exchange_free(&d->x);
    free(d);
}

/* The next round's length, computed right after a sync at learning rate lr. */
static int64_t next_h(const loco_sync *s, const loco_sync_step_in *in)
{
    int64_t h = s->p.h;
    if (LOCO_H_QSR == s->p.h_schedule && NULL != in) {
        bool warmup = in->step + 1 < in->optim->params.warmup_steps;
        h = warmup ? s->p.h : loco_qsr_h(s->p.h, s->p.qsr_alpha, in->lr);
    }
    return h;
}

static void outer_apply(loco_sync *s, diloco_state *d, const float *delta)
{
    d->global_version++;
    loco_outer_sgd_step(d->global, d->momentum, delta, s->n, s->p.outer_lr, s->p.outer_momentum,
                        s->p.outer_nesterov);
}

/* Complete the delayed allreduce if it is in flight (its result stays pending). */
static loco_status await_pending(loco_sync *s, diloco_state *d, loco_sync_step_out *out,
                                 loco_error *err)
{
    if (PENDING_IN_FLIGHT == d->sched[SCHED_PENDING]) {
        LOCO_TRY(sync_async_wait(s, &d->pending, out, err));
        d->sched[SCHED_PENDING] = PENDING_ARRIVED;
    }
    return LOCO_OK;
}

/* delta = global - params. */
static void pseudo_gradient(const loco_sync *s, const diloco_state *d, const float *params,
                            float *delta)
{
#pragma omp parallel for schedule(static) if (s->n >= 65536)
    for (size_t i = 0; i < s->n; i++) {
        delta[i] = d->global[i] - params[i];
    }
}

/* sync.exchange allgather: delta = the mean of every worker's decoded message. This worker's
 * message comes from the caller's encoder (params not read) or is encoded here from params. */
static loco_status allgather_average(loco_sync *s, diloco_state *d, const float *params,
                                     const loco_sync_delta_encoder *encoder, int64_t step,
                                     float *delta, loco_sync_step_out *out, loco_error *err)
{
    sync_exchange *x = &d->x;
    if (NULL != encoder) {
        loco_codec_ctx ctx = sync_codec_ctx(s, (int)s->member, 0, step);
        size_t len = 0;
        LOCO_TRY(encoder->encode(encoder->ctx, d->global, d->global_version, s->codec, &ctx,
                                 x->send + 4, x->bound - 4, &len, err));
        LOCO_ASSERT(len <= x->bound - 4);
        uint32_t len32 = (uint32_t)len; /* [u32 length][message], as sync_exchange_encode */
        for (int b = 0; b < 4; b++) {
            x->send[b] = (uint8_t)(len32 >> (8 * b));
        }
        x->send_len = 4 + len;
    } else {
        pseudo_gradient(s, d, params, delta);
        LOCO_TRY(sync_exchange_encode(s, x, delta, step, err));
    }
    LOCO_TRY(sync_exchange_gather(s, x, out, err));
    memset(delta, 0, s->n * sizeof(float));
    float scale = 1.0f / (float)s->world;
    for (int r = 0; r < s->world; r++) {
        const uint8_t *msg = NULL;
        size_t len = 0;
        LOCO_TRY(sync_exchange_message(x, r, 0, &msg, &len, err));
        loco_codec_ctx ctx = sync_codec_ctx(s, r, 0, step);
        LOCO_TRY(loco_codec_decode_add_ex(s->codec, msg, len, delta, s->n, scale, &ctx, err));
    }
    return LOCO_OK;
}

/* End a round: average the pseudo-gradient and take the outer step (see the file comment). */
static loco_status diloco_sync(loco_sync *s, diloco_state *d, float *params,
                               const loco_sync_step_in *in, loco_sync_step_out *out,
                               loco_error *err)
{
    float *delta = d->delta[0];
    int64_t step = d->steps_done - 1;
    if (d->allgather) {
        const loco_sync_delta_encoder *encoder = NULL != in ? in->delta_encoder : NULL;
        LOCO_TRY(allgather_average(s, d, params, encoder, step, delta, out, err));
        outer_apply(s, d, delta);
    } else if (0 == s->p.delay) {
        pseudo_gradient(s, d, params, delta);
        LOCO_TRY(sync_allreduce_avg(s, s->codec, delta, s->n, step, out, err));
        outer_apply(s, d, delta);
    } else {
        pseudo_gradient(s, d, params, delta);
        LOCO_TRY(await_pending(s, d, out, err));
        if (PENDING_ARRIVED == d->sched[SCHED_PENDING]) {
            outer_apply(s, d, d->delta[1]);
            d->sched[SCHED_PENDING] = PENDING_NONE;
        }
        /* delta[1] is free: the new pseudo-gradient goes there and travels while we train */
        d->delta[0] = d->delta[1];
        d->delta[1] = delta;
        LOCO_TRY(sync_async_start(s, &d->pending, s->codec, delta, s->n, step, err));
        bool in_flight = NULL != d->pending.req || d->pending.lost;
        d->sched[SCHED_PENDING] = in_flight ? PENDING_IN_FLIGHT : PENDING_ARRIVED;
    }
    memcpy(params, d->global, s->n * sizeof(float));
    d->sched[SCHED_ROUNDS]++;
    d->sched[SCHED_ROUND_START] = d->steps_done;
    d->sched[SCHED_H] = next_h(s, in);
    out->synced = true;
    return LOCO_OK;
}

/* Does step end a round? The condition diloco_step tests after counting the step. */
static bool round_ends(const loco_sync *s, const diloco_state *d, int64_t steps_done)
{
    return steps_done - d->sched[SCHED_ROUND_START] >= d->sched[SCHED_H] ||
           steps_done >= s->p.total_steps;
}

static bool diloco_uses_params(const loco_sync *s, int64_t step)
{
    return round_ends(s, s->impl, step + 1);
}

static loco_status diloco_step(loco_sync *s, const loco_sync_step_in *in,
                               loco_sync_step_out *out, loco_error *err)
{
    diloco_state *d = s->impl;
    if (!s->resuming) { /* a repeat after a lost member only repeats the sync */
        LOCO_TRY(sync_inner_update(s, in, in->grads_finite, out, err));
    }
    d->steps_done = in->step + 1;
    out->h = (int)d->sched[SCHED_H];
    if (!round_ends(s, d, d->steps_done)) {
        return LOCO_OK;
    }
    LOCO_TRY(diloco_sync(s, d, in->params, in, out, err));
    out->h = (int)d->sched[SCHED_H];
    return LOCO_OK;
}

static loco_status diloco_finish(loco_sync *s, float *params, loco_sync_step_out *out,
                                 loco_error *err)
{
    diloco_state *d = s->impl;
    if (d->steps_done > d->sched[SCHED_ROUND_START]) {
        LOCO_TRY(diloco_sync(s, d, params, NULL, out, err));
    }
    LOCO_TRY(await_pending(s, d, out, err));
    if (PENDING_ARRIVED == d->sched[SCHED_PENDING]) {
        outer_apply(s, d, d->delta[1]);
        d->sched[SCHED_PENDING] = PENDING_NONE;
        out->synced = true;
    }
    memcpy(params, d->global, s->n * sizeof(float));
    return LOCO_OK;
}

static loco_status diloco_quiesce(loco_sync *s, loco_error *err)
{
    return await_pending(s, s->impl, NULL, err);
}

static void diloco_buffers(loco_sync *s, sync_buffer_list *list)
{
    diloco_state *d = s->impl;
    sync_add_buffer(list, "outer.params", LOCO_SYNC_F32, d->global, s->n, true);
    if (NULL != d->momentum) {
        sync_add_buffer(list, "outer.momentum", LOCO_SYNC_F32, d->momentum, s->n, true);
    }
    sync_add_buffer(list, "schedule", LOCO_SYNC_I64, d->sched, SCHED_COUNT, true);
    if (0 != s->p.delay && PENDING_IN_FLIGHT != d->sched[SCHED_PENDING]) {
        sync_add_buffer(list, "outer.pending_delta", LOCO_SYNC_F32, d->delta[1], s->n, true);
    }
}

static void diloco_restored(loco_sync *s)
{
    diloco_state *d = s->impl;
    d->steps_done = d->sched[SCHED_ROUND_START];
    d->global_version++; /* theta_global may hold other bytes now */
}

static loco_status diloco_recovered(loco_sync *s, loco_error *err)
{
    diloco_state *d = s->impl;
    if (d->allgather) {
        LOCO_TRY(sync_exchange_resize(s, &d->x, err));
    }
    return sync_async_restart(s, &d->pending, err);
}

static uint64_t diloco_global_version(const loco_sync *s)
{
    const diloco_state *d = s->impl;
    return d->global_version;
}

static const float *diloco_eval_params(const loco_sync *s, const float *params)
{
    const diloco_state *d = s->impl;
    return d->global;
}

const sync_ops loco_sync_diloco_ops = {
    .init = diloco_init,
    .free = diloco_free,
    .step = diloco_step,
    .finish = diloco_finish,
    .quiesce = diloco_quiesce,
    .buffers = diloco_buffers,
    .restored = diloco_restored,
    .eval_params = diloco_eval_params,
    .uses_params = diloco_uses_params,
    .recovered = diloco_recovered,
    .global_version = diloco_global_version,
};
