/* optim/sync_comm.c — what the strategies share (sync_impl.h): averaging collectives with
 * byte accounting, the allgather exchange of per-worker codec messages, and the inner update. */
#include "optim/sync_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Add a finished operation's cost to out. */
static void account(loco_sync_step_out *out, const loco_op_info *info, double waited_s)
{
    if (NULL == out) {
        return;
    }
    out->sync_bytes_sent += info->bytes_sent;
    out->sync_bytes_received += info->bytes_received;
    out->comm_wait_s += waited_s;
}

static loco_status op_failed(loco_status st, const loco_op_info *info, const char *what,
                             size_t count, loco_error *err)
{
    return loco_error_set(err, st, "%s of %zu elements failed: %s", what, count,
                          info->error[0] ? info->error : loco_status_str(st));
}

/* One process: what the ring's owner would hold, decode(encode(buf)), in place. */
static loco_status round_trip(loco_sync *s, const loco_codec *codec, float *buf, size_t count,
                              int64_t step, loco_error *err)
{
    size_t cap = loco_codec_bound(codec, count);
    uint8_t *msg = malloc(cap);
    if (NULL == msg) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "sync: cannot allocate %zu bytes", cap);
    }
    loco_codec_ctx ctx = sync_codec_ctx(s, 0, 0, step);
    size_t len = 0;
    loco_status st = loco_codec_encode_ex(codec, NULL, buf, count, &ctx, msg, cap, &len, err);
    if (LOCO_OK == st) {
        memset(buf, 0, count * sizeof(float));
        st = loco_codec_decode_add_ex(codec, msg, len, buf, count, 1.0f, &ctx, err);
    }
    free(msg);
    return st;
}

loco_status sync_allreduce_avg(loco_sync *s, const loco_codec *codec, float *buf, size_t count,
                               int64_t step, loco_sync_step_out *out, loco_error *err)
{
    if (NULL == s->comm) {
        return NULL != codec ? round_trip(s, codec, buf, count, step, err) : LOCO_OK;
    }
    loco_op_info info;
    double t0 = loco_now_s();
    loco_status st;
    if (NULL == codec) {
        st = loco_allreduce(s->comm, buf, buf, count, LOCO_DTYPE_F32, LOCO_REDUCE_AVG, &info);
    } else {
        loco_codec_ctx ctx = {.seed = s->p.seed, .step = (uint64_t)step};
        st = loco_allreduce_codec(s->comm, buf, buf, count, LOCO_REDUCE_AVG, codec, &ctx, &info);
    }
    if (LOCO_OK != st) {
        return op_failed(st, &info, "allreduce", count, err);
    }
    account(out, &info, loco_now_s() - t0);
    return LOCO_OK;
}

loco_status sync_iallreduce_avg(loco_sync *s, const loco_codec *codec, float *buf, size_t count,
                                int64_t step, loco_request_t *req, loco_error *err)
{
    *req = NULL;
    if (NULL == s->comm) {
        return NULL != codec ? round_trip(s, codec, buf, count, step, err) : LOCO_OK;
    }
    loco_status st;
    if (NULL == codec) {
        st = loco_iallreduce(s->comm, buf, buf, count, LOCO_DTYPE_F32, LOCO_REDUCE_AVG, req);
    } else {
        loco_codec_ctx ctx = {.seed = s->p.seed, .step = (uint64_t)step};
        st = loco_iallreduce_codec(s->comm, buf, buf, count, LOCO_REDUCE_AVG, codec, &ctx, req);
    }
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "starting an allreduce of %zu elements failed: %s", count,
                              loco_comm_error(s->comm));
    }
    return LOCO_OK;
}

loco_status sync_wait(loco_sync *s, loco_request_t *req, loco_sync_step_out *out,
                      loco_error *err)
{
    if (NULL == *req) {
        return LOCO_OK;
    }
    loco_op_info info;
    double t0 = loco_now_s();
    loco_status st = loco_wait(req, &info);
    if (LOCO_OK != st) {
        return op_failed(st, &info, "asynchronous allreduce", 0, err);
    }
    account(out, &info, loco_now_s() - t0);
    return LOCO_OK;
}

loco_status sync_async_start(loco_sync *s, sync_async *a, const loco_codec *codec, float *buf,
                             size_t count, int64_t step, loco_error *err)
{
    *a = (sync_async){.codec = codec, .buf = buf, .count = count, .step = step};
    loco_error e = {0};
    loco_status st = sync_iallreduce_avg(s, codec, buf, count, step, &a->req, &e);
    if (LOCO_ERR_PEER_LOST == st) {
        a->lost = true; /* the epoch is broken: restarted after the recovery */
        return LOCO_OK;
    }
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "%s", e.msg);
    }
    return LOCO_OK;
}

loco_status sync_async_wait(loco_sync *s, sync_async *a, loco_sync_step_out *out,
                            loco_error *err)
{
    if (a->lost) {
        return loco_error_set(err, LOCO_ERR_PEER_LOST,
                              "the asynchronous average of step %lld (%zu elements) was lost "
                              "with a member: recover and repeat",
                              (long long)a->step, a->count);
    }
    loco_status st = sync_wait(s, &a->req, out, err);
    a->lost = LOCO_ERR_PEER_LOST == st;
    return st;
}

loco_status sync_async_restart(loco_sync *s, sync_async *a, loco_error *err)
{
    if (!a->lost) {
        return LOCO_OK;
    }
    return sync_async_start(s, a, a->codec, a->buf, a->count, a->step, err);
}

/* ---------------------------------------------------------------------------------------------
 * Message exchange */

loco_codec_ctx sync_codec_ctx(const loco_sync *s, int r, int u, int64_t step)
{
    return (loco_codec_ctx){.seed = s->p.seed, .step = (uint64_t)step, .rank = (uint32_t)r,
                            .tensor = (uint32_t)u};
}

/* The state-list names of a unit's buffers: EF residual, EF estimate, codec buffers. */
static void name_buffers(sync_unit *unit)
{
    snprintf(unit->buf_names[0], sizeof unit->buf_names[0], "ef.residual.%s", unit->name);
    snprintf(unit->buf_names[1], sizeof unit->buf_names[1], "ef.estimate.%s", unit->name);
    loco_codec_buffer cb[2];
    int nb = loco_codec_state_buffers(unit->cstate, cb);
    for (int i = 0; i < nb; i++) {
        snprintf(unit->buf_names[2 + i], sizeof unit->buf_names[2 + i], "%s.%s", cb[i].name,
                 unit->name);
    }
}

loco_status sync_exchange_init(loco_sync *s, bool per_tensor, const loco_ef_params *ef,
                               sync_exchange *x, loco_error *err)
{
    memset(x, 0, sizeof *x);
    LOCO_ASSERT(NULL != s->codec);
    int count = per_tensor ? s->table->count : 1;
    x->units = calloc((size_t)count, sizeof *x->units);
    if (NULL == x->units) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "sync: out of memory");
    }
    x->count = count;
    loco_ef_params none = loco_ef_params_default();
    none.mode = LOCO_EF_NONE;
    for (int u = 0; u < count; u++) {
        sync_unit *unit = &x->units[u];
        if (per_tensor) {
            const loco_tensor *t = &s->table->tensors[u];
            snprintf(unit->name, sizeof unit->name, "%s", t->name);
            unit->offset = t->offset;
            unit->numel = t->numel;
            unit->rows = 2 == t->ndim ? (size_t)t->shape[0] : 1;
            unit->cols = 2 == t->ndim ? (size_t)t->shape[1] : t->numel;
        } else {
            snprintf(unit->name, sizeof unit->name, "all");
            unit->offset = 0;
            unit->numel = s->n;
            unit->rows = 1;
            unit->cols = s->n;
        }
        LOCO_TRY(loco_codec_state_init(&unit->cstate, s->codec, unit->rows, unit->cols, err));
        LOCO_TRY(loco_ef_init(&unit->ef, NULL != ef ? ef : &none, unit->numel, err));
        name_buffers(unit);
        x->bound += 4 + loco_codec_bound_shape(s->codec, unit->rows, unit->cols);
    }
    x->send = malloc(x->bound);
    if (NULL == x->send) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "sync: cannot allocate %zu message bytes",
                              x->bound);
    }
    return sync_exchange_resize(s, x, err);
}

loco_status sync_exchange_resize(loco_sync *s, sync_exchange *x, loco_error *err)
{
    /* a joiner is created before it has a world (0): size for one until it is admitted */
    size_t world = s->world > 0 ? (size_t)s->world : 1;
    free(x->recv);
    free(x->recv_counts);
    free(x->recv_displs);
    free(x->sizes);
    x->recv = malloc(x->bound * world);
    x->recv_counts = calloc(world, sizeof *x->recv_counts);
    x->recv_displs = calloc(world, sizeof *x->recv_displs);
    x->sizes = calloc(world, sizeof *x->sizes);
    if (NULL == x->recv || NULL == x->recv_counts || NULL == x->recv_displs || NULL == x->sizes) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "sync: cannot allocate %zu message bytes for "
                                                   "%zu workers",
                              x->bound * world, world);
    }
    return LOCO_OK;
}

void sync_exchange_free(sync_exchange *x)
{
    for (int u = 0; NULL != x->units && u < x->count; u++) {
        loco_codec_state_free(x->units[u].cstate);
        loco_ef_free(x->units[u].ef);
    }
    free(x->units);
    free(x->send);
    free(x->recv);
    free(x->recv_counts);
    free(x->recv_displs);
    free(x->sizes);
    memset(x, 0, sizeof *x);
}

void sync_exchange_buffers(sync_exchange *x, sync_buffer_list *list)
{
    for (int u = 0; u < x->count; u++) {
        sync_unit *unit = &x->units[u];
        float *e = NULL, *h = NULL;
        loco_ef_buffers(unit->ef, &e, &h);
        if (NULL != e) {
            sync_add_buffer(list, unit->buf_names[0], LOCO_SYNC_F32, e, unit->numel, false);
        }
        if (NULL != h) {
            sync_add_buffer(list, unit->buf_names[1], LOCO_SYNC_F32, h, unit->numel, false);
        }
        loco_codec_buffer cb[2];
        int nb = loco_codec_state_buffers(unit->cstate, cb);
        for (int i = 0; i < nb; i++) {
            sync_add_buffer(list, unit->buf_names[2 + i], LOCO_SYNC_F32, cb[i].data, cb[i].len,
                            false);
        }
    }
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

loco_status sync_exchange_encode(loco_sync *s, sync_exchange *x, const float *g, int64_t step,
                                 loco_error *err)
{
    size_t at = 0;
    for (int u = 0; u < x->count; u++) {
        sync_unit *unit = &x->units[u];
        loco_codec_ctx ctx = sync_codec_ctx(s, (int)s->member, u, step);
        size_t len = 0;
        LOCO_TRY(loco_ef_encode(unit->ef, s->codec, unit->cstate, g + unit->offset, unit->numel,
                                &ctx, x->send + at + 4, x->bound - at - 4, &len, err));
        LOCO_ASSERT(len <= UINT32_MAX);
        put_u32(x->send + at, (uint32_t)len);
        at += 4 + len;
    }
    x->send_len = at;
    return LOCO_OK;
}

loco_status sync_exchange_gather(loco_sync *s, sync_exchange *x, loco_sync_step_out *out,
                                 loco_error *err)
{
    if (NULL == s->comm) {
        memcpy(x->recv, x->send, x->send_len);
        x->recv_counts[0] = x->send_len;
        x->recv_displs[0] = 0;
        return LOCO_OK;
    }
    loco_op_info info;
    double t0 = loco_now_s();
    uint64_t mine = x->send_len;
    loco_status st = loco_allgather(s->comm, &mine, sizeof mine, x->sizes, LOCO_DTYPE_BYTE, &info);
    if (LOCO_OK != st) {
        return op_failed(st, &info, "allgather of message sizes", (size_t)s->world, err);
    }
    account(out, &info, loco_now_s() - t0);
    size_t displ = 0;
    for (int r = 0; r < s->world; r++) {
        if (x->sizes[r] > x->bound) {
            return loco_error_set(err, LOCO_ERR_PROTOCOL,
                                  "worker %d announced a %llu-byte message, more than the %zu "
                                  "bytes its codec can produce: the workers run different "
                                  "settings or versions",
                                  r, (unsigned long long)x->sizes[r], x->bound);
        }
        x->recv_counts[r] = (size_t)x->sizes[r];
        x->recv_displs[r] = displ;
        displ += (size_t)x->sizes[r];
    }
    t0 = loco_now_s();
    st = loco_allgatherv(s->comm, x->send, x->send_len, x->recv, x->recv_counts, x->recv_displs,
                         LOCO_DTYPE_BYTE, &info);
    if (LOCO_OK != st) {
        return op_failed(st, &info, "allgatherv of messages", displ, err);
    }
    account(out, &info, loco_now_s() - t0);
    return LOCO_OK;
}

loco_status sync_exchange_message(const sync_exchange *x, int r, int u, const uint8_t **msg,
                                  size_t *len, loco_error *err)
{
    const uint8_t *blob = x->recv + x->recv_displs[r];
    size_t size = x->recv_counts[r];
    size_t at = 0;
    for (int i = 0; i <= u; i++) {
        if (size - at < 4) {
            return loco_error_set(err, LOCO_ERR_TRUNCATED,
                                  "worker %d's message ends before unit %d", r, i);
        }
        size_t n = get_u32(blob + at);
        if (n > size - at - 4) {
            return loco_error_set(err, LOCO_ERR_TRUNCATED,
                                  "worker %d's unit %d declares %zu bytes, %zu remain", r, i, n,
                                  size - at - 4);
        }
        if (i == u) {
            *msg = blob + at + 4;
            *len = n;
            return LOCO_OK;
        }
        at += 4 + n;
    }
    return LOCO_ERR_INTERNAL;
}

/* ---------------------------------------------------------------------------------------------
 * Inner update */

loco_status sync_inner_update(loco_sync *s, const loco_sync_step_in *in, bool finite,
                              loco_sync_step_out *out, loco_error *err)
{
    if (!finite) {
        out->skipped = true;
        return LOCO_OK;
    }
    if (in->inner_done) {
        out->grad_norm = in->inner_grad_norm;
        out->skipped = !isfinite(in->inner_grad_norm);
        return LOCO_OK;
    }
    loco_error clip_err = {0};
    loco_status st = loco_grad_clip(in->grads, s->n, in->optim->params.grad_clip,
                                    &out->grad_norm, &clip_err);
    if (LOCO_ERR_NONFINITE == st) {
        out->skipped = true;
        return LOCO_OK;
    }
    LOCO_TRY(st);
    return loco_optim_step(in->optim, in->params, in->grads, in->lr, s->table, err);
}
