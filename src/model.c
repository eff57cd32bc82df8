/* src/model.c — the GPT model: configuration, parameter table, buffers, forward and backward
 * (see model.h). The per-layer math lives in layers.c, the structs in model_impl.h, cached
 * decoding in decode.c, the CUDA backend in model_cuda.c.
 *
 * Read in this order: configuration checks, the parameter table, buffer layout, init/free,
 * forward, backward.
 */
#include "model.h"

#include "src/layers.h"
#include "src/model_impl.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Configuration */

void loco_model_config_default(loco_model_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->n_layer = 4;
    cfg->n_embd = 128;
    cfg->n_head = 4;
    cfg->n_kv_head = 4;
    cfg->ctx = 128;
    cfg->vocab = 256;
    for (int l = 0; l < LOCO_MAX_LAYERS; l++) {
        cfg->kv_src[l] = l;
    }
    cfg->init_std = 0.02f;
}

loco_status loco_model_config_validate(const loco_model_config *cfg, loco_error *err)
{
    if (cfg->n_layer < 1 || cfg->n_layer > LOCO_MAX_LAYERS) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "model.n_layer = %d: must be 1..%d",
                              cfg->n_layer, LOCO_MAX_LAYERS);
    }
    if (cfg->n_head < 1 || cfg->n_embd < 1 || 0 != cfg->n_embd % cfg->n_head) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "model.n_embd = %d, model.n_head = %d: both must be >= 1 and n_embd "
                              "a multiple of n_head",
                              cfg->n_embd, cfg->n_head);
    }
    if (cfg->n_kv_head < 1 || 0 != cfg->n_head % cfg->n_kv_head) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "model.n_kv_head = %d: must divide model.n_head = %d (n_head: MHA, "
                              "a divisor: GQA, 1: MQA)",
                              cfg->n_kv_head, cfg->n_head);
    }
    if (cfg->ctx < 1 || cfg->ctx > (1 << 20)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "model.ctx = %d: must be 1..%d", cfg->ctx,
                              1 << 20);
    }
    if (cfg->vocab < 1 || cfg->vocab > 65536) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "model.vocab = %d: must be 1..65536 (tokens are 16-bit)", cfg->vocab);
    }
    if (!(cfg->init_std >= 0.0f) || !isfinite(cfg->init_std)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "model.init_std = %g: must be finite and >= 0",
                              (double)cfg->init_std);
    }
    for (int l = 0; l < cfg->n_layer; l++) {
        int src = cfg->kv_src[l];
        if (src < 0 || src > l) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "model.kv_src[%d] = %d: must name layer %d itself or a layer "
                                  "below it (0..%d)",
                                  l, src, l, l);
        }
        if (cfg->kv_src[src] != src) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "model.kv_src[%d] = %d: layer %d does not produce K/V "
                                  "(kv_src[%d] = %d); point layer %d at a producer",
                                  l, src, src, src, cfg->kv_src[src], l);
        }
    }
    return LOCO_OK;
}

int loco_model_n_kv_layers(const loco_model_config *cfg)
{
    int n = 0;
    for (int l = 0; l < cfg->n_layer; l++) {
        n += cfg->kv_src[l] == l;
    }
    return n;
}

size_t loco_model_kv_cache_numel(const loco_model_config *cfg, int T)
{
    size_t head_size = (size_t)(cfg->n_embd / cfg->n_head);
    return (size_t)loco_model_n_kv_layers(cfg) * 2 * (size_t)cfg->n_kv_head * head_size * (size_t)T;
}

/* ---------------------------------------------------------------------------------------------
 * The parameter table */

static void table_add(loco_tensor_table *table, int layer, const char *suffix, int64_t d0,
                      int64_t d1)
{
    char name[LOCO_TENSOR_NAME_MAX];
    if (layer >= 0) {
        snprintf(name, sizeof name, "h.%d.%s", layer, suffix);
    } else {
        snprintf(name, sizeof name, "%s", suffix);
    }
    int64_t dims[2] = {d0, d1};
    loco_tensor_table_add(table, name, layer, d1 > 0 ? 2 : 1, dims);
}

loco_status loco_model_build_table(const loco_model_config *cfg, loco_tensor_table *table,
                                   loco_error *err)
{
    LOCO_TRY(loco_model_config_validate(cfg, err));
    int64_t C = cfg->n_embd;
    int64_t KV = (int64_t)cfg->n_kv_head * (C / cfg->n_head);
    if (LOCO_OK != loco_tensor_table_init(table, 4 + 20 * cfg->n_layer)) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for the tensor table");
    }
    table_add(table, -1, "wte", cfg->vocab, C);
    table_add(table, -1, "wpe", cfg->ctx, C);
    for (int l = 0; l < cfg->n_layer; l++) {
        bool producer = cfg->kv_src[l] == l;
        table_add(table, l, "ln_1.weight", C, 0);
        table_add(table, l, "ln_1.bias", C, 0);
        /* q, k, v weights then q, k, v biases: adjacent, so a producer's three projections run
         * as one (C + 2 KV, C) matmul. */
        table_add(table, l, "attn.q.weight", C, C);
        if (producer) {
            table_add(table, l, "attn.k.weight", KV, C);
            table_add(table, l, "attn.v.weight", KV, C);
        }
        table_add(table, l, "attn.q.bias", C, 0);
        if (producer) {
            table_add(table, l, "attn.k.bias", KV, 0);
            table_add(table, l, "attn.v.bias", KV, 0);
        }
        table_add(table, l, "attn.c_proj.weight", C, C);
        table_add(table, l, "attn.c_proj.bias", C, 0);
        table_add(table, l, "ln_2.weight", C, 0);
        table_add(table, l, "ln_2.bias", C, 0);
        table_add(table, l, "mlp.c_fc.weight", 4 * C, C);
        table_add(table, l, "mlp.c_fc.bias", 4 * C, 0);
        table_add(table, l, "mlp.c_proj.weight", C, 4 * C);
        table_add(table, l, "mlp.c_proj.bias", C, 0);
    }
    table_add(table, -1, "ln_f.weight", C, 0);
    table_add(table, -1, "ln_f.bias", C, 0);
    return LOCO_OK;
}

/* Floats of activations for (B, T); with base non-NULL, also point the views into it. */
static size_t layout_acts(loco_model *m, float *base, int B, int T)
{
    size_t BT = (size_t)B * T, C = m->C, V = m->cfg.vocab;
    float *cur = base;
    size_t total = 0;
#define ACT(field, n)                                                                              \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (NULL != base) {                                                                        \
            (field) = take(&cur, n_);                                                              \
        }                                                                                          \
        total += round16(n_);                                                                      \
    } while (0)
    ACT(m->encoded, BT * C);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        layer_acts *a = &m->layer[l];
        ACT(a->ln1, BT * C);
        ACT(a->ln1_mean, BT);
        ACT(a->ln1_rstd, BT);
        ACT(a->qkv, BT * m->qkv_dim[l]);
        ACT(a->att, (size_t)B * m->NH * T * T);
        ACT(a->atty, BT * C);
        ACT(a->res2, BT * C);
        ACT(a->ln2, BT * C);
        ACT(a->ln2_mean, BT);
        ACT(a->ln2_rstd, BT);
        ACT(a->fch, BT * 4 * C);
        ACT(a->fch_gelu, BT * 4 * C);
        ACT(a->res3, BT * C);
    }
    ACT(m->lnf, BT * C);
    ACT(m->lnf_mean, BT);
    ACT(m->lnf_rstd, BT);
    ACT(m->logits, BT * V);
    ACT(m->lse, BT);
    ACT(m->losses, BT);
    ACT(m->dresidual, BT * C);
    ACT(m->dln, BT * C);
    ACT(m->dfch, BT * 4 * C);
    ACT(m->datty, BT * C);
    ACT(m->dq, BT * C);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (m->kv_index[l] >= 0) {
            ACT(m->dqkv[l], BT * m->qkv_dim[l]);
        } else if (NULL != base) {
            m->dqkv[l] = NULL;
        }
    }
    ACT(m->att_scratch, (size_t)m->ws.threads * loco_attention_scratch_floats(T, m->hs));
#undef ACT
    return total;
}

/* Point a model_weights at the tensors of `buf` (params or grads). */
static void view_weights(const loco_model *m, float *buf, model_weights *w)
{
    const loco_tensor_table *t = &m->table;
#define AT(name) (buf + t->tensors[loco_tensor_table_find(t, name)].offset)
    w->wte = AT("wte");
    w->wpe = AT("wpe");
    w->lnfw = AT("ln_f.weight");
    w->lnfb = AT("ln_f.bias");
    char name[LOCO_TENSOR_NAME_MAX];
    for (int l = 0; l < m->cfg.n_layer; l++) {
        layer_weights *lw = &w->layer[l];
#define LAYER_AT(field, suffix)                                                                    \
    do {                                                                                           \
        snprintf(name, sizeof name, "h.%d.%s", l, suffix);                                         \
        lw->field = AT(name);                                                                      \
    } while (0)
        LAYER_AT(ln1w, "ln_1.weight");
        LAYER_AT(ln1b, "ln_1.bias");
        LAYER_AT(qkvw, "attn.q.weight");
        LAYER_AT(qkvb, "attn.q.bias");
        LAYER_AT(attprojw, "attn.c_proj.weight");
        LAYER_AT(attprojb, "attn.c_proj.bias");
        LAYER_AT(ln2w, "ln_2.weight");
        LAYER_AT(ln2b, "ln_2.bias");
        LAYER_AT(fcw, "mlp.c_fc.weight");
        LAYER_AT(fcb, "mlp.c_fc.bias");
        LAYER_AT(fcprojw, "mlp.c_proj.weight");
        LAYER_AT(fcprojb, "mlp.c_proj.bias");
#undef LAYER_AT
    }
#undef AT
}

/* ---------------------------------------------------------------------------------------------
 * Buffer layout and lifetime */

loco_status loco_model_init(loco_model **model, const loco_model_config *cfg, int B, int T,
                            loco_error *err)
{
    return loco_model_init_device(model, cfg, B, T, LOCO_DEVICE_CPU, 0, err);
}

static loco_status cpu_init(loco_model *m, loco_error *err)
{
    if (LOCO_OK != loco_gemm_workspace_init(&m->ws, omp_get_max_threads())) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for matmul scratch");
    }
    size_t act_floats = layout_acts(m, NULL, m->max_B, m->max_T);
    m->acts = loco_alloc_aligned(act_floats * sizeof(float));
    if (NULL == m->acts) {
        return loco_error_set(err, LOCO_ERR_NOMEM,
                              "out of memory: %zu activation floats for B = %d, T = %d (lower the "
                              "batch or sequence length)",
                              act_floats, m->max_B, m->max_T);
    }
    layout_acts(m, m->acts, m->max_B, m->max_T);
    return LOCO_OK;
}

static void cpu_release(loco_model *m)
{
    free(m->acts);
    loco_gemm_workspace_free(&m->ws);
}

loco_status loco_model_init_device(loco_model **model, const loco_model_config *cfg, int B, int T,
                                   loco_device device, int cuda_device, loco_error *err)
{
    *model = NULL;
    LOCO_TRY(loco_model_config_validate(cfg, err));
    if (B < 1 || T < 1 || T > cfg->ctx) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "model buffers for B = %d, T = %d: need B >= 1 and 1 <= T <= ctx "
                              "(%d)",
                              B, T, cfg->ctx);
    }
    if (LOCO_DEVICE_CPU != device && LOCO_DEVICE_CUDA != device) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "unknown device %d (cpu or cuda)",
                              (int)device);
    }
    loco_model *m = calloc(1, sizeof *m);
    if (NULL == m) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for the model");
    }
    m->cfg = *cfg;
    m->C = cfg->n_embd;
    m->NH = cfg->n_head;
    m->NKV = cfg->n_kv_head;
    m->hs = m->C / m->NH;
    m->kv_dim = m->NKV * m->hs;
    int slot = 0;
    for (int l = 0; l < cfg->n_layer; l++) {
        bool producer = cfg->kv_src[l] == l;
        m->qkv_dim[l] = m->C + (producer ? 2 * m->kv_dim : 0);
        m->kv_index[l] = producer ? slot++ : -1;
    }
    m->max_B = B;
    m->max_T = T;
    m->device = device;
    m->cuda_device = cuda_device;
    m->backend = LOCO_DEVICE_CUDA == device ? &loco_model_cuda_backend : &loco_model_cpu_backend;
    loco_status st = loco_model_build_table(cfg, &m->table, err);
    if (LOCO_OK == st) {
        size_t n = m->table.numel;
        m->params = loco_alloc_aligned(n * sizeof(float));
        m->grads = loco_alloc_aligned(n * sizeof(float));
        m->tokens = calloc(2 * (size_t)B * T, sizeof(uint16_t));
        if (NULL == m->params || NULL == m->grads || NULL == m->tokens) {
            st = loco_error_set(err, LOCO_ERR_NOMEM, "out of memory: %zu parameters", n);
        }
    }
    if (LOCO_OK == st) {
        m->targets = m->tokens + (size_t)B * T;
        view_weights(m, m->params, &m->w);
        view_weights(m, m->grads, &m->g);
        st = m->backend->init(m, err);
    }
    if (LOCO_OK != st) {
        loco_model_free(m);
        return st;
    }
    *model = m;
    return LOCO_OK;
}

void loco_model_free(loco_model *model)
{
    if (NULL == model) {
        return;
    }
    if (NULL != model->backend) {
        model->backend->release(model);
    }
    free(model->params);
    free(model->grads);
    free(model->tokens);
    loco_tensor_table_free(&model->table);
    free(model);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && 0 == strcmp(s + ls - lx, suffix);
}

loco_status loco_model_init_weights(loco_model *model, uint64_t seed)
{
    const loco_tensor_table *t = &model->table;
    float proj_std = model->cfg.init_std / sqrtf(2.0f * (float)model->cfg.n_layer);
    for (int i = 0; i < t->count; i++) {
        const loco_tensor *ti = &t->tensors[i];
        float *p = model->params + ti->offset;
        if (1 == ti->ndim) {
            bool ln_weight = NULL != strstr(ti->name, "ln_") && ends_with(ti->name, ".weight");
            for (size_t j = 0; j < ti->numel; j++) {
                p[j] = ln_weight ? 1.0f : 0.0f;
            }
            continue;
        }
        float std = ends_with(ti->name, "c_proj.weight") ? proj_std : model->cfg.init_std;
        loco_rng rng;
        loco_rng_init(&rng, seed, loco_hash64(ti->name, strlen(ti->name), 0));
        for (size_t j = 0; j < ti->numel; j++) {
            p[j] = std * loco_rng_normal(&rng);
        }
    }
    return model->backend->params_written(model, NULL);
}

const loco_model_config *loco_model_get_config(const loco_model *model) { return &model->cfg; }
const loco_tensor_table *loco_model_tensors(const loco_model *model) { return &model->table; }
size_t loco_model_num_params(const loco_model *model) { return model->table.numel; }
float *loco_model_params(loco_model *model) { return model->params; }
float *loco_model_grads(loco_model *model) { return model->grads; }
loco_device loco_model_device(const loco_model *model) { return model->device; }

const float *loco_model_logits(const loco_model *model)
{
    /* A CUDA model fills its host copy on request: a cache, so the model is logically const. */
    return model->backend->logits((loco_model *)model);
}

loco_status loco_model_upload_params(loco_model *model, loco_error *err)
{
    return model->backend->params_written(model, err);
}

loco_status loco_model_download(loco_model *model, loco_error *err)
{
    return model->backend->to_host(model, err);
}

float *loco_model_device_params(loco_model *model)
{
    return NULL != model->gpu ? loco_cuda_gpt_params(model->gpu) : NULL;
}

uint16_t *loco_model_device_params_bf16(loco_model *model)
{
    return NULL != model->gpu ? loco_cuda_gpt_params_bf16(model->gpu) : NULL;
}

float *loco_model_device_grads(loco_model *model)
{
    return NULL != model->gpu ? loco_cuda_gpt_grads(model->gpu) : NULL;
}

loco_cuda_ctx *loco_model_cuda_ctx(loco_model *model) { return model->cuda; }
loco_cuda_gpt *loco_model_cuda_gpt(loco_model *model) { return model->gpu; }

loco_model_profile loco_model_get_profile(const loco_model *model) { return model->profile; }

void loco_model_reset_profile(loco_model *model)
{
    memset(&model->profile, 0, sizeof model->profile);
}

const char *loco_model_op_name(loco_model_op op)
{
    static const char *names[LOCO_OP_COUNT] = {"embedding", "layernorm", "matmul", "attention",
                                               "loss"};
    return op >= 0 && op < LOCO_OP_COUNT ? names[op] : "?";
}

/* Add the time since *t to *slot and restart *t. */
static void lap(double *slot, uint64_t *t)
{
    uint64_t now = loco_now_ns();
    *slot += 1e-9 * (double)(now - *t);
    *t = now;
}

void loco_model_zero_grad(loco_model *model)
{
    loco_status st = model->backend->zero_grad(model, NULL);
    if (LOCO_OK != st) { /* a CUDA failure; it shows again at the next forward */
        LOCO_ERROR("zeroing the gradients failed: %s", loco_status_str(st));
    }
}

static loco_status cpu_zero_grad(loco_model *m, loco_error *err)
{
    (void)err;
    memset(m->grads, 0, m->table.numel * sizeof(float));
    return LOCO_OK;
}

static loco_status cpu_nothing(loco_model *m, loco_error *err)
{
    (void)m, (void)err;
    return LOCO_OK; /* the CPU works on the host buffers themselves */
}

static const float *cpu_logits(loco_model *m) { return m->logits; }

/* ---------------------------------------------------------------------------------------------
 * Forward */

static loco_status check_tokens(const uint16_t *tokens, size_t n, int vocab, const char *what,
                                int T, loco_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] >= vocab) {
            return loco_error_set(err, LOCO_ERR_RANGE,
                                  "%s[%zu][%zu] = %u is not below the vocabulary size %d", what,
                                  i / (size_t)T, i % (size_t)T, tokens[i], vocab);
        }
    }
    return LOCO_OK;
}

loco_status loco_model_forward(loco_model *model, const uint16_t *tokens, const uint16_t *targets,
                               int B, int T, float *loss, loco_error *err)
{
    loco_model *m = model;
    if (T < 1 || T > m->cfg.ctx) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "sequence of %d tokens: the model's context is %d (model.ctx); feed "
                              "at most ctx tokens",
                              T, m->cfg.ctx);
    }
    if (B < 1 || B > m->max_B || T > m->max_T) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "batch %d x %d tokens: this model was allocated for at most %d x %d",
                              B, T, m->max_B, m->max_T);
    }
    size_t BT = (size_t)B * T;
    LOCO_TRY(check_tokens(tokens, BT, m->cfg.vocab, "tokens", T, err));
    if (NULL != targets) {
        LOCO_TRY(check_tokens(targets, BT, m->cfg.vocab, "targets", T, err));
    }
    memcpy(m->tokens, tokens, BT * sizeof(uint16_t));
    if (NULL != targets) {
        memcpy(m->targets, targets, BT * sizeof(uint16_t));
    }
    m->B = B;
    m->T = T;
    m->backward_ready = false;
    float mean_loss = NAN;
    LOCO_TRY(m->backend->forward(m, NULL != targets, &mean_loss, err));
    m->backward_ready = NULL != targets;
    if (NULL != loss) {
        *loss = mean_loss;
    }
    return LOCO_OK;
}

static loco_status cpu_forward(loco_model *m, bool with_targets, float *loss, loco_error *err)
{
    (void)err;
    int B = m->B, T = m->T, N = B * T, C = m->C, V = m->cfg.vocab;
    const loco_gemm_workspace *ws = &m->ws;

    double *prof = m->profile.forward_s;
    uint64_t t = loco_now_ns();
    loco_encoder_forward(m->encoded, m->tokens, m->w.wte, m->w.wpe, B, T, C);
    lap(&prof[LOCO_OP_EMBEDDING], &t);
    const float *residual = m->encoded; /* (B, T, C) */
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const layer_weights *lw = &m->w.layer[l];
        layer_acts *a = &m->layer[l];
        int src = m->cfg.kv_src[l];
        const float *kv = m->layer[src].qkv; /* producer's [Q | K | V] rows */
        loco_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, residual, lw->ln1w, lw->ln1b, N,
                               C);
        lap(&prof[LOCO_OP_LAYERNORM], &t);
        loco_matmul_forward(ws, a->qkv, a->ln1, lw->qkvw, lw->qkvb, NULL, N, C, m->qkv_dim[l]);
        lap(&prof[LOCO_OP_MATMUL], &t);
        loco_attention_forward(ws, m->att_scratch, a->atty, a->att, a->qkv, m->qkv_dim[l], kv + C,
                               kv + C + m->kv_dim, m->qkv_dim[src], B, T, m->NH, m->NKV, m->hs);
        lap(&prof[LOCO_OP_ATTENTION], &t);
        loco_matmul_forward(ws, a->res2, a->atty, lw->attprojw, lw->attprojb, residual, N, C, C);
        lap(&prof[LOCO_OP_MATMUL], &t);
        loco_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, lw->ln2w, lw->ln2b, N, C);
        lap(&prof[LOCO_OP_LAYERNORM], &t);
        loco_matmul_gelu_forward(ws, a->fch, a->fch_gelu, a->ln2, lw->fcw, lw->fcb, N, C, 4 * C);
        lap(&prof[LOCO_OP_MATMUL], &t);
        loco_matmul_forward(ws, a->res3, a->fch_gelu, lw->fcprojw, lw->fcprojb, a->res2, N, 4 * C,
                            C);
        lap(&prof[LOCO_OP_MATMUL], &t);
        residual = a->res3;
    }
    loco_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, residual, m->w.lnfw, m->w.lnfb, N, C);
    lap(&prof[LOCO_OP_LAYERNORM], &t);
    loco_matmul_forward(ws, m->logits, m->lnf, m->w.wte, NULL, NULL, N, C, V);
    lap(&prof[LOCO_OP_MATMUL], &t);

    *loss = NAN;
    if (with_targets) {
        *loss = (float)loco_crossentropy_forward(m->losses, m->lse, m->logits, m->targets, N, V);
        lap(&prof[LOCO_OP_LOSS], &t);
    }
    m->profile.forwards++;
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Backward */

loco_status loco_model_backward(loco_model *model, loco_error *err)
{
    loco_model *m = model;
    if (!m->backward_ready) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "backward needs a forward with targets first (and runs once per "
                              "forward)");
    }
    m->backward_ready = false;
    return m->backend->backward(m, err);
}

static loco_status cpu_backward(loco_model *m, loco_error *err)
{
    (void)err;
    int B = m->B, T = m->T, N = B * T, C = m->C, V = m->cfg.vocab, L = m->cfg.n_layer;
    const loco_gemm_workspace *ws = &m->ws;

    double *prof = m->profile.backward_s;
    uint64_t t = loco_now_ns();
    memset(m->dresidual, 0, (size_t)N * C * sizeof(float));
    loco_crossentropy_backward(m->logits, m->lse, m->targets, 1.0f / (float)N, N, V);
    lap(&prof[LOCO_OP_LOSS], &t);
    float *dlogits = m->logits; /* (B, T, V) */
    loco_matmul_backward(ws, m->dln, m->g.wte, NULL, dlogits, m->lnf, m->w.wte, N, C, V);
    lap(&prof[LOCO_OP_MATMUL], &t);
    const float *last = m->layer[L - 1].res3;
    loco_layernorm_backward(m->dresidual, m->g.lnfw, m->g.lnfb, m->dln, last, m->w.lnfw,
                            m->lnf_mean, m->lnf_rstd, N, C);
    lap(&prof[LOCO_OP_LAYERNORM], &t);

    for (int l = L - 1; l >= 0; l--) {
        const layer_weights *lw = &m->w.layer[l];
        const layer_weights *lg = &m->g.layer[l];
        const layer_acts *a = &m->layer[l];
        const float *residual = l > 0 ? m->layer[l - 1].res3 : m->encoded;
        int src = m->cfg.kv_src[l];
        const float *kv = m->layer[src].qkv;
        float *dkv = m->dqkv[src];
        bool producer = src == l;
        float *dq = producer ? m->dqkv[l] : m->dq; /* rows of stride qkv_dim[l] */
        /* K/V gradients sum over all readers of a producer; the highest reader, first in this
         * reverse loop, starts the sum. */
        bool first_reader = true;
        for (int above = l + 1; above < L; above++) {
            first_reader = first_reader && m->cfg.kv_src[above] != src;
        }

        /* MLP: res3 = res2 + c_proj(gelu(c_fc(ln_2(res2)))) */
        loco_matmul_backward_gelu(ws, m->dfch, lg->fcprojw, lg->fcprojb, m->dresidual, a->fch_gelu,
                                  lw->fcprojw, a->fch, N, 4 * C, C);
        lap(&prof[LOCO_OP_MATMUL], &t);
        loco_matmul_backward(ws, m->dln, lg->fcw, lg->fcb, m->dfch, a->ln2, lw->fcw, N, C, 4 * C);
        lap(&prof[LOCO_OP_MATMUL], &t);
        loco_layernorm_backward(m->dresidual, lg->ln2w, lg->ln2b, m->dln, a->res2, lw->ln2w,
                                a->ln2_mean, a->ln2_rstd, N, C);
        lap(&prof[LOCO_OP_LAYERNORM], &t);
        /* attention: res2 = residual + c_proj(attn(q(ln_1), k, v)) */
        loco_matmul_backward(ws, m->datty, lg->attprojw, lg->attprojb, m->dresidual, a->atty,
                             lw->attprojw, N, C, C);
        lap(&prof[LOCO_OP_MATMUL], &t);
        loco_attention_backward(ws, m->att_scratch, dq, m->qkv_dim[l], dkv + C, dkv + C + m->kv_dim,
                                first_reader, m->datty, a->att, a->qkv, m->qkv_dim[l], kv + C,
                                kv + C + m->kv_dim, m->qkv_dim[src], B, T, m->NH, m->NKV, m->hs);
        lap(&prof[LOCO_OP_ATTENTION], &t);
        /* A producer is the lowest reader of its K/V: every consumer above has added its dK/dV
         * by now, so one matmul backward over [dQ | dK | dV] covers all readers. */
        loco_matmul_backward(ws, m->dln, lg->qkvw, lg->qkvb, dq, a->ln1, lw->qkvw, N, C,
                             m->qkv_dim[l]);
        lap(&prof[LOCO_OP_MATMUL], &t);
        loco_layernorm_backward(m->dresidual, lg->ln1w, lg->ln1b, m->dln, residual, lw->ln1w,
                                a->ln1_mean, a->ln1_rstd, N, C);
        lap(&prof[LOCO_OP_LAYERNORM], &t);
    }
    loco_encoder_backward(m->g.wte, m->g.wpe, m->dresidual, m->tokens, B, T, C);
    lap(&prof[LOCO_OP_EMBEDDING], &t);
    m->profile.backwards++;
    return LOCO_OK;
}

const model_backend loco_model_cpu_backend = {
    .name = "cpu",
    .init = cpu_init,
    .release = cpu_release,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .zero_grad = cpu_zero_grad,
    .params_written = cpu_nothing,
    .to_host = cpu_nothing,
    .logits = cpu_logits,
};
