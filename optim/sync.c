/* optim/sync.c — sync strategy parameters, validation, QSR, the outer optimizer, and the
 * dispatch from loco_sync_* to the strategy files (see sync.h). The shared collective helpers
 * are in sync_comm.c. */
#include "collectives/membership.h"
#include "optim/sync_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_strategy_names[LOCO_SYNC_STRATEGY_COUNT] = {
    "none", "ddp", "diloco", "streaming", "demo",
};

static const sync_ops *strategy_ops(loco_sync_strategy strategy)
{
    switch (strategy) {
    case LOCO_SYNC_NONE: return &loco_sync_none_ops;
    case LOCO_SYNC_DDP: return &loco_sync_ddp_ops;
    case LOCO_SYNC_DILOCO: return &loco_sync_diloco_ops;
    case LOCO_SYNC_STREAMING: return &loco_sync_streaming_ops;
    case LOCO_SYNC_DEMO: return &loco_sync_demo_ops;
    default: return NULL;
    }
}

loco_sync_params loco_sync_params_default(loco_sync_strategy strategy)
{
    loco_sync_params p;
    memset(&p, 0, sizeof p);
    p.strategy = strategy;
    p.h = 50;
    p.h_schedule = LOCO_H_FIXED;
    p.qsr_alpha = 0.0175f;
    p.outer_lr = 0.7f;
    p.outer_momentum = 0.9f;
    p.outer_nesterov = true;
    p.delay = 0;
    p.fragments = 2;
    p.fragment_pattern = LOCO_FRAGMENT_STRIDED;
    p.overlap = 1;
    p.mix_alpha = 0.5f;
    p.demo_beta = 0.999f;
    loco_codec_id id = LOCO_CODEC_NONE;
    if (LOCO_SYNC_STREAMING == strategy) {
        id = LOCO_CODEC_FP4;
    } else if (LOCO_SYNC_DEMO == strategy) {
        id = LOCO_CODEC_DCT_TOPK;
    }
    p.compress = LOCO_CODEC_NONE != id;
    p.codec = loco_codec_params_default(id);
    p.ef = loco_ef_params_default();
    p.ef.mode = LOCO_EF_NONE;
    p.total_steps = 1000;
    p.seed = 1;
    return p;
}

const char *loco_sync_strategy_name(loco_sync_strategy strategy)
{
    if ((int)strategy < 0 || strategy >= LOCO_SYNC_STRATEGY_COUNT) {
        return "unknown";
    }
    return g_strategy_names[strategy];
}

loco_status loco_sync_strategy_parse(const char *name, loco_sync_strategy *strategy,
                                     loco_error *err)
{
    for (int i = 0; i < LOCO_SYNC_STRATEGY_COUNT; i++) {
        if (0 == strcmp(name, g_strategy_names[i])) {
            *strategy = (loco_sync_strategy)i;
            return LOCO_OK;
        }
    }
    return loco_error_set(err, LOCO_ERR_CONFIG,
                          "sync.strategy: unknown strategy '%s'; allowed: none, ddp, diloco, "
                          "streaming, demo",
                          name);
}

/* Codecs whose per-chunk messages sum through the compressed ring (stateless, dense). */
static bool codec_fits_ring(loco_codec_id id)
{
    switch (id) {
    case LOCO_CODEC_NONE:
    case LOCO_CODEC_FP16:
    case LOCO_CODEC_BF16:
    case LOCO_CODEC_MAXMIN:
    case LOCO_CODEC_QSGD:
    case LOCO_CODEC_FP4:
    case LOCO_CODEC_TERNARY:
    case LOCO_CODEC_SIGN:
    case LOCO_CODEC_RANDK: return true;
    default: return false;
    }
}

static bool in_range(float x, float lo, float hi) { return isfinite(x) && x >= lo && x <= hi; }

/* The round/fragment settings of diloco and streaming. */
static loco_status validate_rounds(const loco_sync_params *p, loco_error *err)
{
    if (p->h < 1) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "sync.h = %d: allowed: at least 1 inner step",
                              p->h);
    }
    if (!(isfinite(p->outer_lr) && p->outer_lr > 0.0f && p->outer_lr <= 100.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "sync.outer_lr = %g: allowed: (0, 100]",
                              (double)p->outer_lr);
    }
    if (!in_range(p->outer_momentum, 0.0f, 0.999999f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "sync.outer_momentum = %g: allowed: [0, 1)",
                              (double)p->outer_momentum);
    }
    if (LOCO_H_QSR == p->h_schedule) {
        if (LOCO_SYNC_DILOCO != p->strategy) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "sync.h_schedule = qsr works with sync.strategy diloco only "
                                  "(streaming needs a fixed H that P divides); allowed here: "
                                  "fixed");
        }
        if (!(isfinite(p->qsr_alpha) && p->qsr_alpha > 0.0f)) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "sync.qsr_alpha = %g: allowed: > 0 (alpha 0 would disable QSR)",
                                  (double)p->qsr_alpha);
        }
    } else if (LOCO_H_FIXED != p->h_schedule) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "sync.h_schedule: allowed: fixed, qsr");
    }
    if (0 != p->delay && (LOCO_SYNC_DILOCO != p->strategy || 1 != p->delay)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.delay = %d: allowed: 0, or 1 with sync.strategy diloco "
                              "(streaming overlaps through sync.overlap)",
                              p->delay);
    }
    if (LOCO_SYNC_STREAMING != p->strategy) {
        return LOCO_OK;
    }
    if (p->fragments < 1 || p->fragments > LOCO_SYNC_MAX_FRAGMENTS) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "sync.fragments = %d: allowed: 1..%d",
                              p->fragments, LOCO_SYNC_MAX_FRAGMENTS);
    }
    if (0 != p->h % p->fragments) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.h = %d is not divisible by sync.fragments = %d; allowed: an "
                              "H that is a multiple of P (one fragment syncs every H/P steps)",
                              p->h, p->fragments);
    }
    int period = p->h / p->fragments;
    if (p->overlap < 0 || p->overlap >= period) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.overlap = %d must be less than sync.h / sync.fragments = %d "
                              "(a fragment's average must land before the next fragment is "
                              "sent); allowed: 0..%d",
                              p->overlap, period, period - 1);
    }
    if (!in_range(p->mix_alpha, 0.0f, 1.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "sync.mix_alpha = %g: allowed: [0, 1]",
                              (double)p->mix_alpha);
    }
    if (LOCO_FRAGMENT_STRIDED != p->fragment_pattern &&
        LOCO_FRAGMENT_SEQUENTIAL != p->fragment_pattern) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.fragment_pattern: allowed: strided, sequential");
    }
    return LOCO_OK;
}

/* diloco with sync.exchange allgather: one encoded message per worker. */
static loco_status validate_diloco_allgather(const loco_sync_params *p, loco_error *err)
{
    loco_codec_id id = p->compress ? p->codec.id : LOCO_CODEC_NONE;
    if (LOCO_CODEC_NONE == id) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.exchange = allgather needs a codec (raw fp32 averages travel "
                              "by the ring); set codec.name (e.g. maxmin) or sync.exchange: ring");
    }
    if (LOCO_CODEC_DGC == id || LOCO_CODEC_POWERSGD == id) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "codec.name = %s does not fit sync.exchange allgather: the whole "
                              "pseudo-gradient travels as one vector message, and %s keeps "
                              "per-tensor state across steps; allowed: fp16, bf16, maxmin, qsgd, "
                              "fp4, ternary, sign, topk, randk, dct_topk",
                              loco_codec_name(id), loco_codec_name(id));
    }
    if (0 != p->delay) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.delay = %d needs sync.exchange ring (the allgather runs "
                              "synchronously); allowed with allgather: 0",
                              p->delay);
    }
    return LOCO_OK;
}

/* Does the codec (and error feedback) fit the strategy? */
static loco_status validate_codec(const loco_sync_params *p, loco_error *err)
{
    const char *strategy = loco_sync_strategy_name(p->strategy);
    loco_codec_id id = p->compress ? p->codec.id : LOCO_CODEC_NONE;
    const char *codec = loco_codec_name(id);
    if (p->compress) {
        LOCO_TRY(loco_codec_params_validate(&p->codec, err));
    }
    if (LOCO_EF_NONE != p->ef.mode) {
        if (LOCO_SYNC_DDP != p->strategy) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.ef = %s: error feedback is for sync.strategy ddp (demo "
                                  "has its own decaying residual, sync.demo_beta); allowed for "
                                  "%s: none",
                                  loco_ef_mode_name(p->ef.mode), strategy);
        }
        if (LOCO_CODEC_NONE == id) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.ef = %s needs a lossy codec; set codec.name (e.g. topk) "
                                  "or codec.ef: none",
                                  loco_ef_mode_name(p->ef.mode));
        }
        if (LOCO_CODEC_DGC == id) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.ef = %s around codec dgc: DGC's velocity is already its "
                                  "error feedback; allowed: codec.ef: none",
                                  loco_ef_mode_name(p->ef.mode));
        }
        if (!(p->ef.eta > 0.0f && p->ef.eta <= 1.0f) ||
            !(p->ef.decay > 0.0f && p->ef.decay <= 1.0f)) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.ef_eta = %g, codec.ef_decay = %g: allowed: (0, 1] each",
                                  (double)p->ef.eta, (double)p->ef.decay);
        }
    }
    switch (p->strategy) {
    case LOCO_SYNC_NONE:
        if (LOCO_CODEC_NONE != id) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.name = %s with sync.strategy none: a single process "
                                  "sends nothing; allowed: codec.name none (or choose a strategy "
                                  "that communicates: ddp, diloco, streaming, demo)",
                                  codec);
        }
        return LOCO_OK;
    case LOCO_SYNC_DDP: return LOCO_OK; /* any codec: ring or allgather */
    case LOCO_SYNC_DILOCO:
        if (LOCO_EXCHANGE_ALLGATHER == p->exchange) {
            return validate_diloco_allgather(p, err);
        }
        /* the ring, like streaming */
        __attribute__((fallthrough));
    case LOCO_SYNC_STREAMING:
        if (!codec_fits_ring(id)) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.name = %s does not fit sync.strategy %s: pseudo-gradients "
                                  "are averaged by the compressed ring, which needs a dense or "
                                  "quantized codec; allowed: none, fp16, bf16, maxmin, qsgd, "
                                  "fp4, ternary, sign, randk",
                                  codec, strategy);
        }
        return LOCO_OK;
    case LOCO_SYNC_DEMO:
        if (LOCO_CODEC_DCT_TOPK != id) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.name = %s does not fit sync.strategy demo: DeMo sends "
                                  "the top-k DCT coefficients of its momentum; allowed: dct_topk "
                                  "(codec.chunk_topk sets k per chunk)",
                                  codec);
        }
        if (!(p->demo_beta > 0.0f && p->demo_beta <= 1.0f)) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "sync.demo_beta = %g: allowed: (0, 1]",
                                  (double)p->demo_beta);
        }
        return LOCO_OK;
    default: return loco_error_set(err, LOCO_ERR_CONFIG, "sync.strategy: unknown strategy");
    }
}

loco_status loco_sync_params_validate(const loco_sync_params *p, loco_error *err)
{
    if (NULL == strategy_ops(p->strategy)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.strategy = %d; allowed: none, ddp, diloco, streaming, demo",
                              (int)p->strategy);
    }
    if (p->total_steps < 0) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "total steps %d: allowed: >= 0",
                              p->total_steps);
    }
    if (LOCO_EXCHANGE_RING != p->exchange && LOCO_EXCHANGE_ALLGATHER != p->exchange) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.exchange = %d; allowed: ring, allgather", (int)p->exchange);
    }
    if (LOCO_EXCHANGE_ALLGATHER == p->exchange && LOCO_SYNC_DILOCO != p->strategy) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.exchange = allgather with sync.strategy %s; allowed: ring, "
                              "or allgather with sync.strategy diloco",
                              loco_sync_strategy_name(p->strategy));
    }
    if (LOCO_SYNC_DILOCO == p->strategy || LOCO_SYNC_STREAMING == p->strategy) {
        LOCO_TRY(validate_rounds(p, err));
    } else if (0 != p->delay) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.delay = %d with sync.strategy %s; allowed: 0 (delay is a "
                              "diloco option)",
                              p->delay, loco_sync_strategy_name(p->strategy));
    }
    return validate_codec(p, err);
}

/* Transformer blocks in a table: 1 + the largest layer index (0 if none). */
static int table_layers(const loco_tensor_table *table)
{
    int layers = 0;
    for (int i = 0; i < table->count; i++) {
        if (table->tensors[i].layer + 1 > layers) {
            layers = table->tensors[i].layer + 1;
        }
    }
    return layers;
}

loco_status loco_sync_check_setup(const loco_sync_params *p, int world,
                                  const loco_tensor_table *table, loco_error *err)
{
    if (world > 1 && LOCO_SYNC_NONE == p->strategy) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "sync.strategy is none but %d workers were started: they would "
                              "never communicate; allowed: ddp, diloco, streaming or demo (or "
                              "run one process)",
                              world);
    }
    if (LOCO_SYNC_STREAMING == p->strategy && NULL != table) {
        int layers = table_layers(table);
        if (p->fragments > layers) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "sync.fragments = %d but the model has %d transformer blocks; "
                                  "allowed: 1..%d (each fragment holds whole blocks)",
                                  p->fragments, layers, layers);
        }
    }
    return LOCO_OK;
}

int loco_qsr_h(int h_base, double alpha, double lr)
{
    if (!(lr > 0.0) || !(alpha > 0.0)) {
        return h_base;
    }
    double ratio = alpha / lr;
    double h = floor(ratio * ratio * (1.0 + 1e-9));
    if (h > (double)(1 << 30)) {
        h = (double)(1 << 30);
    }
    return h > (double)h_base ? (int)h : h_base;
}

void loco_outer_sgd_step(float *theta, float *momentum, const float *delta, size_t n, float lr,
                         float mu, bool nesterov)
{
    if (0.0f == mu) {
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            theta[i] -= lr * delta[i];
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        float b = mu * momentum[i] + delta[i];
        momentum[i] = b;
        float d = nesterov ? delta[i] + mu * b : b;
        theta[i] -= lr * d;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Life cycle and dispatch */

loco_status loco_sync_init(loco_sync **sync, const loco_sync_params *params, loco_comm_t comm,
                           const loco_tensor_table *table, const float *params_init,
                           loco_error *err)
{
    *sync = NULL;
    LOCO_TRY(loco_sync_params_validate(params, err));
    int world = NULL != comm ? loco_comm_size(comm) : 1;
    LOCO_TRY(loco_sync_check_setup(params, world, table, err));
    loco_sync *s = calloc(1, sizeof *s);
    if (NULL == s) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "sync: out of memory");
    }
    s->p = *params;
    s->ops = strategy_ops(params->strategy);
    s->comm = comm;
    s->rank = NULL != comm ? loco_comm_rank(comm) : 0;
    s->member = NULL != comm ? loco_comm_member_id(comm) : 0;
    s->world = world;
    s->table = table;
    s->n = table->numel;
    s->resume_step = -1;
    loco_status st = LOCO_OK;
    if (params->compress && LOCO_CODEC_NONE != params->codec.id) {
        st = loco_codec_init(&s->codec, &params->codec, err);
    }
    if (LOCO_OK == st && NULL != s->ops->init) {
        st = s->ops->init(s, params_init, err);
    }
    if (LOCO_OK != st) {
        loco_sync_free(s);
        return st;
    }
    *sync = s;
    return LOCO_OK;
}

void loco_sync_free(loco_sync *sync)
{
    if (NULL == sync) {
        return;
    }
    if (NULL != sync->ops && NULL != sync->ops->free) {
        sync->ops->free(sync);
    }
    loco_codec_free(sync->codec);
    free(sync);
}

const loco_sync_params *loco_sync_get_params(const loco_sync *sync) { return &sync->p; }

int loco_sync_world(const loco_sync *sync) { return sync->world; }

static void step_out_reset(loco_sync_step_out *out)
{
    memset(out, 0, sizeof *out);
    out->grad_norm = NAN;
    out->fragment = -1;
}

bool loco_sync_accepts_inner_done(loco_sync_strategy strategy)
{
    return LOCO_SYNC_NONE == strategy || LOCO_SYNC_DILOCO == strategy ||
           LOCO_SYNC_STREAMING == strategy;
}

bool loco_sync_step_uses_params(const loco_sync *sync, int64_t step)
{
    if (NULL == sync->ops->uses_params) {
        return true;
    }
    return sync->ops->uses_params(sync, step);
}

bool loco_sync_averages_for_caller(loco_sync_strategy strategy)
{
    return LOCO_SYNC_DDP == strategy;
}

bool loco_sync_takes_delta_encoder(const loco_sync *sync)
{
    return LOCO_SYNC_DILOCO == sync->p.strategy &&
           LOCO_EXCHANGE_ALLGATHER == sync->p.exchange && NULL != sync->codec;
}

uint64_t loco_sync_global_version(const loco_sync *sync)
{
    return NULL != sync->ops->global_version ? sync->ops->global_version(sync) : 0;
}

loco_status loco_sync_step(loco_sync *sync, const loco_sync_step_in *in, loco_sync_step_out *out,
                           loco_error *err)
{
    step_out_reset(out);
    if (in->update_by_caller &&
        (!loco_sync_averages_for_caller(sync->p.strategy) || in->inner_done || NULL == in->grads)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "update_by_caller needs sync.strategy ddp, the local gradient and no "
                              "inner_done");
    }
    if (NULL != in->delta_encoder && !loco_sync_takes_delta_encoder(sync)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "a pseudo-gradient encoder needs sync.strategy diloco with "
                              "sync.exchange allgather and a codec");
    }
    if (in->inner_done && !loco_sync_accepts_inner_done(sync->p.strategy)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "sync.strategy %s needs the local gradient: it cannot take a step "
                              "whose inner update was done elsewhere (allowed: none, diloco, streaming)",
                              loco_sync_strategy_name(sync->p.strategy));
    }
    sync->resuming = sync->resume_step == in->step;
    if (sync->resuming) { /* the local part ran in the failed call: report what it found */
        out->grad_norm = sync->resume_grad_norm;
        out->skipped = sync->resume_skipped;
    }
    loco_status st = sync->ops->step(sync, in, out, err);
    sync->resuming = false;
    sync->resume_step = LOCO_ERR_PEER_LOST == st ? in->step : -1;
    sync->resume_grad_norm = out->grad_norm;
    sync->resume_skipped = out->skipped;
    return st;
}

loco_status loco_sync_finish(loco_sync *sync, float *params, loco_sync_step_out *out,
                             loco_error *err)
{
    loco_sync_step_out local;
    if (NULL == out) {
        out = &local;
    }
    step_out_reset(out);
    if (NULL == sync->ops->finish) {
        return LOCO_OK;
    }
    sync->resuming = sync->resume_finish;
    loco_status st = sync->ops->finish(sync, params, out, err);
    sync->resuming = false;
    sync->resume_finish = LOCO_ERR_PEER_LOST == st;
    return st;
}

loco_status loco_sync_recovered(loco_sync *sync, loco_error *err)
{
    if (NULL == sync->comm) {
        return LOCO_OK;
    }
    sync->rank = loco_comm_rank(sync->comm);
    sync->world = loco_comm_size(sync->comm);
    sync->member = loco_comm_member_id(sync->comm); /* a joiner's id is known once admitted */
    if (NULL == sync->ops->recovered) {
        return LOCO_OK;
    }
    return sync->ops->recovered(sync, err);
}

const float *loco_sync_eval_params(const loco_sync *sync, const float *params)
{
    if (NULL == sync->ops->eval_params) {
        return params;
    }
    return sync->ops->eval_params(sync, params);
}

loco_status loco_sync_sum(loco_sync *sync, float *values, size_t count, loco_error *err)
{
    if (NULL == sync->comm) {
        return LOCO_OK;
    }
    loco_op_info info;
    loco_status st =
        loco_allreduce(sync->comm, values, values, count, LOCO_DTYPE_F32, LOCO_REDUCE_SUM, &info);
    if (LOCO_OK != st) {
        return loco_error_set(err, st, "allreduce of %zu values: %s", count,
                              info.error[0] ? info.error : loco_status_str(st));
    }
    return LOCO_OK;
}

loco_status loco_sync_quiesce(loco_sync *sync, loco_error *err)
{
    if (NULL == sync->ops->quiesce) {
        return LOCO_OK;
    }
    return sync->ops->quiesce(sync, err);
}

int loco_sync_buffers(loco_sync *sync, loco_sync_buffer *out, int cap)
{
    sync_buffer_list list = {out, cap, 0};
    if (NULL != sync->ops->buffers) {
        sync->ops->buffers(sync, &list);
    }
    return list.count;
}

void loco_sync_restored(loco_sync *sync)
{
    if (NULL != sync->ops->restored) {
        sync->ops->restored(sync);
    }
}

uint64_t loco_sync_shared_digest(loco_sync *sync)
{
    int n = loco_sync_buffers(sync, NULL, 0);
    loco_sync_buffer *bufs = calloc((size_t)(n > 0 ? n : 1), sizeof *bufs);
    LOCO_ASSERT(NULL != bufs);
    n = loco_sync_buffers(sync, bufs, n);
    loco_hasher h;
    loco_hasher_init(&h, 0);
    for (int i = 0; i < n; i++) {
        if (!bufs[i].shared) {
            continue;
        }
        size_t elem = LOCO_SYNC_F32 == bufs[i].dtype ? sizeof(float) : sizeof(int64_t);
        loco_hasher_update(&h, bufs[i].name, strlen(bufs[i].name) + 1);
        loco_hasher_update(&h, bufs[i].data, bufs[i].count * elem);
    }
    free(bufs);
    return loco_hasher_final(&h);
}

void sync_add_buffer(sync_buffer_list *list, const char *name, loco_sync_dtype dtype, void *data,
                     size_t count, bool shared)
{
    if (list->count < list->cap) {
        list->out[list->count] = (loco_sync_buffer){name, dtype, data, count, shared};
    }
    list->count++;
}
