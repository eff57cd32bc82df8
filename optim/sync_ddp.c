/* optim/sync_ddp.c — strategy "ddp": gradients averaged over the workers every step, then
 * clipped and applied by the inner optimizer on every replica (replicas stay bit-identical).
 *
 * Three paths, chosen once from the codec:
 *   raw     no codec: loco_allreduce (f32, AVG);
 *   ring    a dense or quantized codec without error feedback (fp16, bf16, maxmin, qsgd, fp4,
 *           ternary, sign, randk): loco_allreduce_codec — each hop decodes, sums in fp32 and
 *           re-encodes; the chunk owner's decode(encode(sum)) is what everyone keeps;
 *   gather  sparse codecs (topk, dgc: one message over the whole gradient; dct_topk, powersgd:
 *           one message per tensor, shaped) and any codec under error feedback: each worker
 *           encodes g through its EF state, the messages are all-gathered, and every worker
 *           decodes all of them in rank order, each scaled by 1/world. Under EF21/EControl the
 *           decoded mean is added to a global estimate H (identical everywhere) and H is the
 *           gradient the optimizer sees.
 * A worker whose local loss was not finite contributes zeros (the mean still divides by the
 * world size); a non-finite mean skips the step on every worker alike. A step repeated after a
 * lost member (sync.h, Failures) gathers the message it already encoded. With update_by_caller
 * the step ends with the average in grads and the caller clips and steps (a GPU worker).
 */
#include "optim/sync_impl.h"

#include <stdlib.h>
#include <string.h>

typedef enum ddp_path {
    DDP_RAW = 0,
    DDP_RING = 1,
    DDP_GATHER = 2,
} ddp_path;

typedef struct ddp_state {
    ddp_path path;
    bool estimator;         /* EF21 / EControl: step with the global estimate */
    sync_exchange x;        /* gather path */
    float *global_estimate; /* (n) estimator: H = running mean of decoded messages (shared) */
} ddp_state;

static bool codec_is_sparse(loco_codec_id id)
{
    return LOCO_CODEC_TOPK == id || LOCO_CODEC_DGC == id || LOCO_CODEC_DCT_TOPK == id ||
           LOCO_CODEC_POWERSGD == id;
}

static loco_status ddp_init(loco_sync *s, const float *params_init, loco_error *err)
{
    ddp_state *d = calloc(1, sizeof *d);
    if (NULL == d) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "ddp: out of memory");
    }
    s->impl = d;
    if (NULL == s->codec) {
        d->path = DDP_RAW;
        return LOCO_OK;
    }
    loco_codec_id id = s->p.codec.id;
    if (!codec_is_sparse(id) && LOCO_EF_NONE == s->p.ef.mode) {
        d->path = DDP_RING;
        return LOCO_OK;
    }
    d->path = DDP_GATHER;
    bool per_tensor = LOCO_CODEC_DCT_TOPK == id || LOCO_CODEC_POWERSGD == id;
    LOCO_TRY(sync_exchange_init(s, per_tensor, &s->p.ef, &d->x, err));
    d->estimator = LOCO_EF_EF21 == s->p.ef.mode || LOCO_EF_ECONTROL == s->p.ef.mode;
    if (d->estimator) {
        d->global_estimate = loco_alloc_aligned(s->n * sizeof(float));
        if (NULL == d->global_estimate) {
            return loco_error_set(err, LOCO_ERR_NOMEM, "ddp: out of memory for the estimate");
        }
    }
    return LOCO_OK;
}

static void ddp_free(loco_sync *s)
{
    ddp_state *d = s->impl;
    if (NULL == d) {
        return;
    }
    sync_exchange_free(&d->x);
    free(d->global_estimate);
    free(d);
}

/* Decode every worker's messages, in rank order, into target (+= message / world). */
static loco_status decode_all(loco_sync *s, ddp_state *d, float *target, int64_t step,
                              loco_error *err)
{
    float scale = 1.0f / (float)s->world;
    for (int r = 0; r < s->world; r++) {
        for (int u = 0; u < d->x.count; u++) {
            const sync_unit *unit = &d->x.units[u];
            const uint8_t *msg = NULL;
            size_t len = 0;
            LOCO_TRY(sync_exchange_message(&d->x, r, u, &msg, &len, err));
            loco_codec_ctx ctx = sync_codec_ctx(s, r, u, step);
            LOCO_TRY(loco_codec_decode_add_ex(s->codec, msg, len, target + unit->offset,
                                              unit->numel, scale, &ctx, err));
        }
    }
    return LOCO_OK;
}

static loco_status ddp_step(loco_sync *s, const loco_sync_step_in *in, loco_sync_step_out *out,
                            loco_error *err)
{
    ddp_state *d = s->impl;
    float *g = in->grads;
    if (!in->grads_finite) {
        memset(g, 0, s->n * sizeof(float));
    }
    switch (d->path) {
    case DDP_RAW: LOCO_TRY(sync_allreduce_avg(s, NULL, g, s->n, in->step, out, err)); break;
    case DDP_RING: LOCO_TRY(sync_allreduce_avg(s, s->codec, g, s->n, in->step, out, err)); break;
    case DDP_GATHER:
        if (!s->resuming) { /* a repeat sends the message already encoded (EF updated once) */
            LOCO_TRY(sync_exchange_encode(s, &d->x, g, in->step, err));
        }
        LOCO_TRY(sync_exchange_gather(s, &d->x, out, err));
        if (d->estimator) {
            LOCO_TRY(decode_all(s, d, d->global_estimate, in->step, err));
            memcpy(g, d->global_estimate, s->n * sizeof(float));
        } else {
            memset(g, 0, s->n * sizeof(float));
            LOCO_TRY(decode_all(s, d, g, in->step, err));
        }
        break;
    }
    out->synced = true;
    if (in->update_by_caller) { /* g holds the average; the caller steps with it */
        return LOCO_OK;
    }
    return sync_inner_update(s, in, true, out, err);
}

static void ddp_buffers(loco_sync *s, sync_buffer_list *list)
{
    ddp_state *d = s->impl;
    if (DDP_GATHER != d->path) {
        return;
    }
    if (d->estimator) {
        sync_add_buffer(list, "ef.global_estimate", LOCO_SYNC_F32, d->global_estimate, s->n,
                        true);
    }
    sync_exchange_buffers(&d->x, list);
}

static void ddp_restored(loco_sync *s)
{
    ddp_state *d = s->impl;
    for (int u = 0; DDP_GATHER == d->path && u < d->x.count; u++) {
        loco_codec_state_mark_restored(d->x.units[u].cstate);
    }
}

static loco_status ddp_recovered(loco_sync *s, loco_error *err)
{
    ddp_state *d = s->impl;
    return DDP_GATHER == d->path ? sync_exchange_resize(s, &d->x, err) : LOCO_OK;
}

const sync_ops loco_sync_ddp_ops = {
    .init = ddp_init,
    .free = ddp_free,
    .step = ddp_step,
    .buffers = ddp_buffers,
    .restored = ddp_restored,
    .recovered = ddp_recovered,
};
