/* optim/sync_demo.c — strategy "demo": Decoupled Momentum Optimization (Peng, Quesnelle,
 * Kingma 2024; bloc97/DeMo demo.py). Per step, per tensor (one exchange unit each, shaped
 * rows x cols for 2-D tensors, 1 x n otherwise):
 *     theta *= 1 - lr wd                            decoupled weight decay (>= 2-D tensors)
 *     delta  = beta delta + lr g                    the local momentum (EF state with decay beta)
 *     msg    = top-k of each DCT chunk of delta     (codec dct_topk, k = codec.chunk_topk)
 *     delta -= IDCT(msg)                            what is sent leaves the momentum
 *     all-gather every worker's msg
 *     C[j]   = mean of the coefficients sent at j   (over the workers that sent j; 0 if none)
 *     theta -= lr sign(IDCT(C))
 * Every worker decodes the same bytes in the same order, so replicas stay bit-identical. g is
 * the local gradient clipped by optim.grad_clip; a worker with a non-finite gradient adds
 * nothing to its momentum that step but still sends. The inner optimizer is not used.
 */
#include "compress/dct.h"
#include "optim/sync_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct demo_state {
    sync_exchange x;  /* one unit per tensor; its EF state (decay beta) is delta */
    float *coef;      /* (n) summed coefficients */
    float *count;     /* (n) how many workers sent each coefficient */
    float *update;    /* (n) IDCT of the mean coefficients */
} demo_state;

static loco_status demo_init(loco_sync *s, const float *params_init, loco_error *err)
{
    demo_state *d = calloc(1, sizeof *d);
    if (NULL == d) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "demo: out of memory");
    }
    s->impl = d;
    loco_ef_params ef = loco_ef_params_default();
    ef.mode = LOCO_EF_EF;
    ef.decay = s->p.demo_beta;
    LOCO_TRY(sync_exchange_init(s, true, &ef, &d->x, err));
    size_t bytes = s->n * sizeof(float);
    d->coef = loco_alloc_aligned(bytes);
    d->count = loco_alloc_aligned(bytes);
    d->update = loco_alloc_aligned(bytes);
    if (NULL == d->coef || NULL == d->count || NULL == d->update) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "demo: cannot allocate %zu bytes", 3 * bytes);
    }
    return LOCO_OK;
}

static void demo_free(loco_sync *s)
{
    demo_state *d = s->impl;
    if (NULL == d) {
        return;
    }
    sync_exchange_free(&d->x);
    free(d->coef);
    free(d->count);
    free(d->update);
    free(d);
}

/* update = IDCT(mean of the gathered coefficients), unit by unit. The whole-vector passes run
 * on every core (element by element: the same bits at any thread count). */
static loco_status gathered_update(loco_sync *s, demo_state *d, loco_error *err)
{
#pragma omp parallel for schedule(static) if (s->n >= 65536)
    for (size_t i = 0; i < s->n; i++) {
        d->coef[i] = 0.0f;
        d->count[i] = 0.0f;
    }
    for (int r = 0; r < s->world; r++) {
        for (int u = 0; u < d->x.count; u++) {
            const sync_unit *unit = &d->x.units[u];
            const uint8_t *msg = NULL;
            size_t len = 0;
            LOCO_TRY(sync_exchange_message(&d->x, r, u, &msg, &len, err));
            LOCO_TRY(loco_dct_add_coefficients(msg, len, unit->rows, unit->cols, 1.0f,
                                               d->coef + unit->offset, d->count + unit->offset,
                                               err));
        }
    }
#pragma omp parallel for schedule(static) if (s->n >= 65536)
    for (size_t i = 0; i < s->n; i++) { /* a mean where anything was sent (branch-free: the
                                          * loop vectorises; x / 1 is exact) */
        d->coef[i] /= d->count[i] > 0.0f ? d->count[i] : 1.0f;
    }
    for (int u = 0; u < d->x.count; u++) {
        const sync_unit *unit = &d->x.units[u];
        loco_dct_inverse(d->coef + unit->offset, unit->rows, unit->cols,
                         d->update + unit->offset);
    }
    return LOCO_OK;
}

/* The local part of a step: clip g, delta = beta delta + lr g, encode the top-k message and
 * take it out of delta. */
static loco_status demo_encode(loco_sync *s, demo_state *d, const loco_sync_step_in *in,
                               loco_sync_step_out *out, loco_error *err)
{
    float *g = in->grads;
    bool finite = in->grads_finite;
    if (finite) {
        loco_error clip_err = {0};
        loco_status st = loco_grad_clip(g, s->n, in->optim->params.grad_clip, &out->grad_norm,
                                        &clip_err);
        finite = LOCO_OK == st;
    }
    if (!finite) {
        memset(g, 0, s->n * sizeof(float));
        out->skipped = true;
    }
    float lr = in->lr;
#pragma omp parallel for schedule(static) if (s->n >= 65536)
    for (size_t i = 0; i < s->n; i++) {
        g[i] *= lr;
    }
    return sync_exchange_encode(s, &d->x, g, in->step, err);
}

static loco_status demo_step(loco_sync *s, const loco_sync_step_in *in, loco_sync_step_out *out,
                             loco_error *err)
{
    demo_state *d = s->impl;
    float lr = in->lr;
    if (!s->resuming) { /* a repeat after a lost member sends the message already encoded */
        LOCO_TRY(demo_encode(s, d, in, out, err));
    }
    LOCO_TRY(sync_exchange_gather(s, &d->x, out, err));
    LOCO_TRY(gathered_update(s, d, err));
    float wd = in->optim->params.weight_decay;
    for (int i = 0; i < s->table->count; i++) {
        const loco_tensor *t = &s->table->tensors[i];
        float keep = t->ndim >= 2 ? 1.0f - lr * wd : 1.0f;
        float *p = in->params + t->offset;
        const float *u = d->update + t->offset;
#pragma omp parallel for schedule(static) if (t->numel >= 65536)
        for (size_t j = 0; j < t->numel; j++) { /* sign(u) as 1, -1 or 0, branch-free */
            float sign = (float)((u[j] > 0.0f) - (u[j] < 0.0f));
            p[j] = p[j] * keep - lr * sign;
        }
    }
    out->synced = true;
    return LOCO_OK;
}

static void demo_buffers(loco_sync *s, sync_buffer_list *list)
{
    demo_state *d = s->impl;
    sync_exchange_buffers(&d->x, list);
}

static loco_status demo_recovered(loco_sync *s, loco_error *err)
{
    demo_state *d = s->impl;
    return sync_exchange_resize(s, &d->x, err);
}

const sync_ops loco_sync_demo_ops = {
    .init = demo_init,
    .free = demo_free,
    .step = demo_step,
    .buffers = demo_buffers,
    .recovered = demo_recovered,
};
