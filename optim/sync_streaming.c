/* optim/sync_streaming.c — strategy "streaming": Streaming DiLoCo (Douillard et al. 2025).
 *
 * The model's transformer blocks are split into P fragments (strided: block l in fragment
 * l mod P; sequential: block l in fragment l P / L; the embeddings join block 0's fragment, the
 * final LayerNorm block L-1's). A fragment is a list of contiguous ranges of the flat buffer.
 * With k = H / P, counting steps s = 1, 2, ... on this worker:
 *   s + tau = j k  (prepare)  fragment f = (j - 1) mod P packs Delta_i = theta_global - theta_i
 *                             over its ranges and starts an asynchronous allreduce (AVG; FP4 by
 *                             default, summed in fp32 at every hop);
 *   s = j k        (perform)  the average arrives (tau steps of training later), the outer
 *                             optimizer updates that fragment of theta_global, and the replica's
 *                             fragment is mixed: theta_i = alpha theta_i + (1 - alpha) theta_global.
 * So every fragment syncs once per H steps, one at a time (peak traffic = model / P).
 * loco_sync_finish completes the fragment in flight, then syncs every fragment trained since
 * its last sync in one allreduce, and sets the replica to theta_global.
 * P = 1, tau = 0, alpha = 0 is DiLoCo exactly (same operations in the same order).
 * A fragment's average lost with a member is started again by loco_sync_recovered (its packed
 * pseudo-gradient is still in staging) and lands at the repeated perform.
 */
#include "optim/sync_impl.h"

#include <stdlib.h>
#include <string.h>

enum { PENDING_NONE = 0, PENDING_IN_FLIGHT = 1, PENDING_ARRIVED = 2 };

/* The schedule buffer: these slots, then one "last synced at step" per fragment. */
enum { SCHED_PENDING, SCHED_PENDING_FRAGMENT, SCHED_SYNCS, SCHED_FIXED };

typedef struct frag_range {
    size_t offset, numel;
} frag_range;

typedef struct fragment {
    frag_range *ranges; /* (n_ranges) into the flat buffer, in order */
    int n_ranges;
    size_t numel;
} fragment;

typedef struct streaming_state {
    float *global;          /* (n) theta_global, shared */
    float *momentum;        /* (n) outer momentum, shared; NULL when mu == 0 */
    float *staging;         /* (n) the packed pseudo-gradient in flight / of the final sync */
    fragment *frags;        /* (P) */
    frag_range *all_ranges; /* storage of every fragment's ranges */
    int64_t *sched;         /* (SCHED_FIXED + P), shared */
    int64_t steps_done;
    sync_async pending;     /* the fragment's average in flight (or lost with a member) */
} streaming_state;

/* Which fragment block l belongs to. */
static int fragment_of_layer(const loco_sync_params *p, int layer, int layers)
{
    if (LOCO_FRAGMENT_STRIDED == p->fragment_pattern) {
        return layer % p->fragments;
    }
    return (int)((int64_t)layer * p->fragments / layers);
}

/* Cut the table into fragments of contiguous ranges. */
static loco_status build_fragments(loco_sync *s, streaming_state *st, loco_error *err)
{
    const loco_tensor_table *t = s->table;
    int layers = 0;
    for (int i = 0; i < t->count; i++) {
        if (t->tensors[i].layer + 1 > layers) {
            layers = t->tensors[i].layer + 1;
        }
    }
    int P = s->p.fragments;
    size_t tensors = t->count > 0 ? (size_t)t->count : 1;
    int *owner = malloc(tensors * sizeof *owner);
    st->frags = calloc((size_t)(P > 0 ? P : 1), sizeof *st->frags);
    st->all_ranges = calloc(tensors, sizeof *st->all_ranges);
    if (NULL == owner || NULL == st->frags || NULL == st->all_ranges) {
        free(owner);
        return loco_error_set(err, LOCO_ERR_NOMEM, "streaming: out of memory");
    }
    bool seen_layer = false;
    for (int i = 0; i < t->count; i++) {
        int layer = t->tensors[i].layer;
        if (layer >= 0) {
            seen_layer = true;
        } else {
            layer = seen_layer ? layers - 1 : 0; /* embeddings first, final norm last */
        }
        owner[i] = fragment_of_layer(&s->p, layer, layers > 0 ? layers : 1);
    }
    /* ranges: maximal runs of consecutive tensors with the same owner, grouped per fragment */
    int used = 0;
    for (int f = 0; f < P; f++) {
        fragment *fr = &st->frags[f];
        fr->ranges = st->all_ranges + used;
        for (int i = 0; i < t->count; i++) {
            if (owner[i] != f) {
                continue;
            }
            const loco_tensor *x = &t->tensors[i];
            bool extends = fr->n_ranges > 0 && i > 0 && owner[i - 1] == f;
            if (extends) {
                fr->ranges[fr->n_ranges - 1].numel += x->numel;
            } else {
                fr->ranges[fr->n_ranges++] = (frag_range){x->offset, x->numel};
            }
            fr->numel += x->numel;
        }
        used += fr->n_ranges;
    }
    free(owner);
    return LOCO_OK;
}

static loco_status streaming_init(loco_sync *s, const float *params_init, loco_error *err)
{
    streaming_state *st = calloc(1, sizeof *st);
    if (NULL == st) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "streaming: out of memory");
    }
    s->impl = st;
    size_t bytes = s->n * sizeof(float);
    st->global = loco_alloc_aligned(bytes);
    st->staging = loco_alloc_aligned(bytes);
    st->sched = calloc((size_t)(SCHED_FIXED + s->p.fragments), sizeof *st->sched);
    if (s->p.outer_momentum > 0.0f) {
        st->momentum = loco_alloc_aligned(bytes);
    }
    if (NULL == st->global || NULL == st->staging || NULL == st->sched ||
        (s->p.outer_momentum > 0.0f && NULL == st->momentum)) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "streaming: cannot allocate %zu bytes",
                              3 * bytes);
    }
    memcpy(st->global, params_init, bytes);
    memset(st->staging, 0, bytes); /* shared state (outer.pending_delta) from the start */
    st->sched[SCHED_PENDING_FRAGMENT] = -1;
    return build_fragments(s, st, err);
}

static void streaming_free(loco_sync *s)
{
    streaming_state *st = s->impl;
    if (NULL == st) {
        return;
    }
    if (NULL != st->pending.req) {
        loco_wait(&st->pending.req, NULL);
    }
    free(st->global);
    free(st->momentum);
    free(st->staging);
    free(st->frags);
    free(st->all_ranges);
    free(st->sched);
    free(st);
}

/* staging (packed) = theta_global - params over the fragments in `which` (a P-entry mask);
 * returns the packed length. */
static size_t pack_delta(const loco_sync *s, const streaming_state *st, const bool *which,
                         const float *params)
{
    size_t at = 0;
    for (int f = 0; f < s->p.fragments; f++) {
        for (int r = 0; which[f] && r < st->frags[f].n_ranges; r++) {
            frag_range rg = st->frags[f].ranges[r];
            for (size_t i = 0; i < rg.numel; i++) {
                st->staging[at + i] = st->global[rg.offset + i] - params[rg.offset + i];
            }
            at += rg.numel;
        }
    }
    return at;
}

/* Outer step on the fragments in `which` from the packed average in staging, then mix the
 * replica: params = alpha params + (1 - alpha) theta_global. */
static void apply_delta(loco_sync *s, streaming_state *st, const bool *which, float *params,
                        float alpha)
{
    size_t at = 0;
    for (int f = 0; f < s->p.fragments; f++) {
        for (int r = 0; which[f] && r < st->frags[f].n_ranges; r++) {
            frag_range rg = st->frags[f].ranges[r];
            float *g = st->global + rg.offset;
            loco_outer_sgd_step(g, NULL != st->momentum ? st->momentum + rg.offset : NULL,
                                st->staging + at, rg.numel, s->p.outer_lr, s->p.outer_momentum,
                                s->p.outer_nesterov);
            float *x = params + rg.offset;
            if (0.0f == alpha) {
                memcpy(x, g, rg.numel * sizeof(float));
            } else {
                for (size_t i = 0; i < rg.numel; i++) {
                    x[i] = alpha * x[i] + (1.0f - alpha) * g[i];
                }
            }
            at += rg.numel;
        }
    }
}

static loco_status await_pending(loco_sync *s, streaming_state *st, loco_sync_step_out *out,
                                 loco_error *err)
{
    if (PENDING_IN_FLIGHT == st->sched[SCHED_PENDING]) {
        LOCO_TRY(sync_async_wait(s, &st->pending, out, err));
        st->sched[SCHED_PENDING] = PENDING_ARRIVED;
    }
    return LOCO_OK;
}

/* Apply the arrived fragment f (perform). */
static void perform(loco_sync *s, streaming_state *st, float *params, float alpha,
                    loco_sync_step_out *out)
{
    int f = (int)st->sched[SCHED_PENDING_FRAGMENT];
    bool which[LOCO_SYNC_MAX_FRAGMENTS] = {false};
    which[f] = true;
    apply_delta(s, st, which, params, alpha);
    st->sched[SCHED_FIXED + f] = st->steps_done;
    st->sched[SCHED_PENDING] = PENDING_NONE;
    st->sched[SCHED_PENDING_FRAGMENT] = -1;
    st->sched[SCHED_SYNCS]++;
    out->synced = true;
    out->fragment = f;
}

static loco_status streaming_step(loco_sync *s, const loco_sync_step_in *in,
                                  loco_sync_step_out *out, loco_error *err)
{
    streaming_state *st = s->impl;
    st->steps_done = in->step + 1;
    out->h = s->p.h;
    int64_t k = s->p.h / s->p.fragments;
    int64_t ahead = st->steps_done + s->p.overlap;
    /* a repeat after a lost member skips the inner update and the prepare (which cannot fail
     * for a lost member: its average is then lost and restarted by loco_sync_recovered) */
    if (!s->resuming) {
        LOCO_TRY(sync_inner_update(s, in, in->grads_finite, out, err));
    }
    if (!s->resuming && 0 == ahead % k) {
        LOCO_ASSERT(PENDING_NONE == st->sched[SCHED_PENDING]); /* tau < k keeps one in flight */
        int f = (int)((ahead / k - 1) % s->p.fragments);
        bool which[LOCO_SYNC_MAX_FRAGMENTS] = {false};
        which[f] = true;
        size_t len = pack_delta(s, st, which, in->params);
        LOCO_TRY(sync_async_start(s, &st->pending, s->codec, st->staging, len, in->step, err));
        bool in_flight = NULL != st->pending.req || st->pending.lost;
        st->sched[SCHED_PENDING] = in_flight ? PENDING_IN_FLIGHT : PENDING_ARRIVED;
        st->sched[SCHED_PENDING_FRAGMENT] = f;
    }
    if (0 == st->steps_done % k && PENDING_NONE != st->sched[SCHED_PENDING]) {
        LOCO_TRY(await_pending(s, st, out, err));
        perform(s, st, in->params, s->p.mix_alpha, out);
    }
    return LOCO_OK;
}

static loco_status streaming_finish(loco_sync *s, float *params, loco_sync_step_out *out,
                                    loco_error *err)
{
    streaming_state *st = s->impl;
    LOCO_TRY(await_pending(s, st, out, err));
    if (PENDING_ARRIVED == st->sched[SCHED_PENDING]) {
        perform(s, st, params, s->p.mix_alpha, out);
    }
    bool which[LOCO_SYNC_MAX_FRAGMENTS] = {false};
    bool any = false;
    for (int f = 0; f < s->p.fragments; f++) {
        which[f] = st->sched[SCHED_FIXED + f] < st->steps_done;
        any = any || which[f];
    }
    if (any) {
        size_t len = pack_delta(s, st, which, params);
        LOCO_TRY(sync_allreduce_avg(s, s->codec, st->staging, len, st->steps_done, out, err));
        apply_delta(s, st, which, params, 0.0f);
        for (int f = 0; f < s->p.fragments; f++) {
            if (which[f]) {
                st->sched[SCHED_FIXED + f] = st->steps_done;
            }
        }
        st->sched[SCHED_SYNCS]++;
        out->synced = true;
    }
    memcpy(params, st->global, s->n * sizeof(float));
    return LOCO_OK;
}

static loco_status streaming_quiesce(loco_sync *s, loco_error *err)
{
    return await_pending(s, s->impl, NULL, err);
}

static void streaming_buffers(loco_sync *s, sync_buffer_list *list)
{
    streaming_state *st = s->impl;
    sync_add_buffer(list, "outer.params", LOCO_SYNC_F32, st->global, s->n, true);
    if (NULL != st->momentum) {
        sync_add_buffer(list, "outer.momentum", LOCO_SYNC_F32, st->momentum, s->n, true);
    }
    sync_add_buffer(list, "schedule", LOCO_SYNC_I64, st->sched,
                    (size_t)(SCHED_FIXED + s->p.fragments), true);
    if (PENDING_IN_FLIGHT != st->sched[SCHED_PENDING]) {
        sync_add_buffer(list, "outer.pending_delta", LOCO_SYNC_F32, st->staging, s->n, true);
    }
}

static loco_status streaming_recovered(loco_sync *s, loco_error *err)
{
    streaming_state *st = s->impl;
    return sync_async_restart(s, &st->pending, err);
}

/* Does step `step` read or write the replica? It reads it when a fragment's pseudo-gradient
 * is prepared (tau steps before its sync) and reads and writes it when an average is mixed in
 * (a sync); a GPU worker keeps the replica on the device on every other step. */
static bool streaming_uses_params(const loco_sync *s, int64_t step)
{
    const streaming_state *st = s->impl;
    int64_t k = s->p.h / s->p.fragments, steps_done = step + 1;
    bool prepares = 0 == (steps_done + s->p.overlap) % k;
    bool mixes = 0 == steps_done % k && PENDING_NONE != st->sched[SCHED_PENDING];
    return prepares || mixes;
}

static const float *streaming_eval_params(const loco_sync *s, const float *params)
{
    const streaming_state *st = s->impl;
    return st->global;
}

const sync_ops loco_sync_streaming_ops = {
    .init = streaming_init,
    .free = streaming_free,
    .step = streaming_step,
    .finish = streaming_finish,
    .quiesce = streaming_quiesce,
    .buffers = streaming_buffers,
    .eval_params = streaming_eval_params,
    .recovered = streaming_recovered,
    .uses_params = streaming_uses_params,
};
