/* cuda/gpt.cu — the GPT model on one GPU (see cuda.h): the same layers, in the same order, as
 * src/model.c's CPU forward and backward, each a call into layers_cuda.h.
 *
 * Read in this order: the struct (parameter offsets from the tensor table, activation views into
 * one device allocation), init/free, parameter copies, forward, backward.
 *
 * Memory: parameters (fp32), their bf16 copy, gradients (fp32), activations and scratch are one
 * device allocation each; pinned host staging for tokens and the encoder plan is one more.
 * Nothing is allocated per step.
 */
#include "cuda/cuda_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offsets of one block's tensors in the flat parameter buffer. */
typedef struct layer_offsets {
    size_t ln1w, ln1b;
    size_t qkvw, qkvb; /* q rows, then k and v rows for producers (adjacent in the table) */
    size_t attprojw, attprojb;
    size_t ln2w, ln2b;
    size_t fcw, fcb, fcprojw, fcprojb;
} layer_offsets;

/* One block's saved activations (B, T sized at init). */
typedef struct layer_acts {
    bf16 *ln1;                  /* (B, T, C) */
    float *ln1_mean, *ln1_rstd; /* (B, T) */
    bf16 *qkv;                  /* (B, T, QKV_l) */
    bf16 *atty;                 /* (B, T, C) attention output before c_proj */
    float *lse;                 /* (B, NH, T) softmax log-sum-exp */
    bf16 *res2;                 /* (B, T, C) */
    bf16 *ln2;                  /* (B, T, C) */
    float *ln2_mean, *ln2_rstd; /* (B, T) */
    bf16 *fch;                  /* (B, T, 4C) before GELU */
    bf16 *fch_gelu;             /* (B, T, 4C) */
    bf16 *res3;                 /* (B, T, C) */
} layer_acts;

/* Per-layer timing: CUDA events around each layer call, read after a synchronization. */
#define PROF_MAX 1024  /* timed calls between two collections */
#define PROF_LABELS 32 /* distinct labels */

typedef struct gpt_profile {
    bool on;
    cudaEvent_t *events; /* (2 PROF_MAX): start and end of each timed call */
    int n;               /* calls recorded since the last collection */
    int label[PROF_MAX];
    const char *names[PROF_LABELS];
    int n_names;
    double ms[PROF_LABELS];
    long calls[PROF_LABELS];
    int steps;
} gpt_profile;

struct loco_cuda_gpt {
    loco_cuda_ctx *ctx;
    loco_cuda_gpt_config cfg;
    int C, NH, NKV, hs, kv_dim, V, L;
    int qkv_dim[LOCO_CUDA_MAX_LAYERS]; /* C + 2 kv_dim for producers, C for consumers */
    size_t n_params;
    size_t wte, wpe, lnfw, lnfb;
    layer_offsets off[LOCO_CUDA_MAX_LAYERS];

    float *params;  /* (n_params) fp32 master */
    bf16 *params16; /* (n_params) */
    float *grads;   /* (n_params) */

    int max_B, max_T;
    unsigned char *acts; /* one allocation for everything below */
    bf16 *encoded;       /* (B, T, C) */
    layer_acts layer[LOCO_CUDA_MAX_LAYERS];
    bf16 *lnf;                  /* (B, T, C) */
    float *lnf_mean, *lnf_rstd; /* (B, T) */
    bf16 *logits;               /* (B, T, V); dlogits in place after a forward with targets */
    float *losses;              /* (B, T) */
    bf16 *dresidual, *dln;      /* (B, T, C) */
    bf16 *dfch;                 /* (B, T, 4C) */
    bf16 *datty, *dq;           /* (B, T, C) */
    bf16 *dqkv[LOCO_CUDA_MAX_LAYERS]; /* (B, T, QKV_l) per producer, NULL for consumers */
    float *scratch;             /* column sums and attention's D */
    uint16_t *tokens;           /* (2, B, T): tokens then targets */
    int *plan;                  /* (loco_encoder_plan_ints(B T)) */

    uint16_t *host_tokens; /* pinned (2, B, T) */
    int *host_plan;        /* pinned (loco_encoder_plan_ints(B T)) */
    int *host_counts;      /* (V) */

    int B, T, n_groups;
    bool backward_ready;
    loco_cuda_grad_hook hook;
    void *hook_user;
    gpt_profile prof;
};

/* ---------------------------------------------------------------------------------------------
 * Init and free */

static loco_status find_offset(const loco_tensor_table *t, int layer, const char *suffix,
                               size_t *off, loco_error *err)
{
    char name[LOCO_TENSOR_NAME_MAX];
    if (layer >= 0) {
        snprintf(name, sizeof name, "h.%d.%s", layer, suffix);
    } else {
        snprintf(name, sizeof name, "%s", suffix);
    }
    int i = loco_tensor_table_find(t, name);
    if (i < 0) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "parameter table has no tensor '%s' (not a loco GPT table)", name);
    }
    *off = t->tensors[i].offset;
    return LOCO_OK;
}

static loco_status read_offsets(loco_cuda_gpt *m, const loco_tensor_table *t, loco_error *err)
{
    LOCO_TRY(find_offset(t, -1, "wte", &m->wte, err));
    LOCO_TRY(find_offset(t, -1, "wpe", &m->wpe, err));
    LOCO_TRY(find_offset(t, -1, "ln_f.weight", &m->lnfw, err));
    LOCO_TRY(find_offset(t, -1, "ln_f.bias", &m->lnfb, err));
    for (int l = 0; l < m->L; l++) {
        layer_offsets *o = &m->off[l];
        LOCO_TRY(find_offset(t, l, "ln_1.weight", &o->ln1w, err));
        LOCO_TRY(find_offset(t, l, "ln_1.bias", &o->ln1b, err));
        LOCO_TRY(find_offset(t, l, "attn.q.weight", &o->qkvw, err));
        LOCO_TRY(find_offset(t, l, "attn.q.bias", &o->qkvb, err));
        LOCO_TRY(find_offset(t, l, "attn.c_proj.weight", &o->attprojw, err));
        LOCO_TRY(find_offset(t, l, "attn.c_proj.bias", &o->attprojb, err));
        LOCO_TRY(find_offset(t, l, "ln_2.weight", &o->ln2w, err));
        LOCO_TRY(find_offset(t, l, "ln_2.bias", &o->ln2b, err));
        LOCO_TRY(find_offset(t, l, "mlp.c_fc.weight", &o->fcw, err));
        LOCO_TRY(find_offset(t, l, "mlp.c_fc.bias", &o->fcb, err));
        LOCO_TRY(find_offset(t, l, "mlp.c_proj.weight", &o->fcprojw, err));
        LOCO_TRY(find_offset(t, l, "mlp.c_proj.bias", &o->fcprojb, err));
        size_t kw = 0, vw = 0;
        if (m->cfg.kv_src[l] == l && (LOCO_OK != find_offset(t, l, "attn.k.weight", &kw, err) ||
                                      LOCO_OK != find_offset(t, l, "attn.v.weight", &vw, err) ||
                                      kw != o->qkvw + (size_t)m->C * m->C ||
                                      vw != kw + (size_t)m->kv_dim * m->C)) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "layer %d: q, k and v weights must be adjacent in the table "
                                  "(src/model.h's layout)",
                                  l);
        }
    }
    return LOCO_OK;
}

static loco_status check_config(const loco_cuda_gpt_config *c, loco_error *err)
{
    if (c->n_layer < 1 || c->n_layer > LOCO_CUDA_MAX_LAYERS || c->n_head < 1 ||
        c->n_kv_head < 1 || 0 != c->n_head % c->n_kv_head || c->n_embd < 1 ||
        0 != c->n_embd % c->n_head || c->vocab < 1 || c->ctx < 1) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "invalid model shape for the GPU (n_layer %d, n_embd %d, n_head %d, "
                              "n_kv_head %d, vocab %d, ctx %d): validate it with "
                              "loco_model_config_validate first",
                              c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->vocab, c->ctx);
    }
    int hs = c->n_embd / c->n_head;
    if (0 != c->n_embd % 8 || 0 != hs % 8 || hs > 256) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "model.n_embd = %d with head size %d: the CUDA path needs n_embd and "
                              "the head size (n_embd / n_head) to be multiples of 8, head size at "
                              "most 256",
                              c->n_embd, hs);
    }
    for (int l = 0; l < c->n_layer; l++) {
        int src = c->kv_src[l];
        if (src < 0 || src > l || c->kv_src[src] != src) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "model.kv_src[%d] = %d: must name a producing layer <= %d", l,
                                  src, l);
        }
    }
    return LOCO_OK;
}

/* Lays out the activation buffer: with base NULL only counts bytes. */
struct carver {
    unsigned char *base;
    size_t off;
    template <class T> T *take(size_t n)
    {
        size_t at = (off + 255) & ~(size_t)255;
        off = at + n * sizeof(T);
        return NULL != base ? reinterpret_cast<T *>(base + at) : NULL;
    }
};

static size_t layout_acts(loco_cuda_gpt *m, unsigned char *base, int B, int T)
{
    carver cv = {base, 0};
    size_t BT = (size_t)B * T, C = m->C;
    m->encoded = cv.take<bf16>(BT * C);
    for (int l = 0; l < m->L; l++) {
        layer_acts *a = &m->layer[l];
        a->ln1 = cv.take<bf16>(BT * C);
        a->ln1_mean = cv.take<float>(BT);
        a->ln1_rstd = cv.take<float>(BT);
        a->qkv = cv.take<bf16>(BT * m->qkv_dim[l]);
        a->atty = cv.take<bf16>(BT * C);
        a->lse = cv.take<float>(BT * m->NH);
        a->res2 = cv.take<bf16>(BT * C);
        a->ln2 = cv.take<bf16>(BT * C);
        a->ln2_mean = cv.take<float>(BT);
        a->ln2_rstd = cv.take<float>(BT);
        a->fch = cv.take<bf16>(BT * 4 * C);
        a->fch_gelu = cv.take<bf16>(BT * 4 * C);
        a->res3 = cv.take<bf16>(BT * C);
    }
    m->lnf = cv.take<bf16>(BT * C);
    m->lnf_mean = cv.take<float>(BT);
    m->lnf_rstd = cv.take<float>(BT);
    m->logits = cv.take<bf16>(BT * m->V);
    m->losses = cv.take<float>(BT);
    m->dresidual = cv.take<bf16>(BT * C);
    m->dln = cv.take<bf16>(BT * C);
    m->dfch = cv.take<bf16>(BT * 4 * C);
    m->datty = cv.take<bf16>(BT * C);
    m->dq = cv.take<bf16>(BT * C);
    for (int l = 0; l < m->L; l++) {
        m->dqkv[l] = m->cfg.kv_src[l] == l ? cv.take<bf16>(BT * m->qkv_dim[l]) : NULL;
    }
    /* scratch: attention's D, or the column sums of any width a backward reduces */
    size_t scratch = loco_attention_scratch_floats_cuda(B, T, m->NH);
    int widths[2 + LOCO_CUDA_MAX_LAYERS] = {m->C, 4 * m->C};
    for (int l = 0; l < m->L; l++) {
        widths[2 + l] = m->qkv_dim[l];
    }
    for (int i = 0; i < 2 + m->L; i++) {
        size_t cs = loco_colsum_scratch_floats((int)BT, widths[i]);
        scratch = cs > scratch ? cs : scratch;
    }
    m->scratch = cv.take<float>(scratch);
    m->tokens = cv.take<uint16_t>(2 * BT);
    m->plan = cv.take<int>(loco_encoder_plan_ints((int)BT));
    return cv.off;
}

extern "C" loco_status loco_cuda_gpt_init(loco_cuda_gpt **gpt, loco_cuda_ctx *ctx,
                                          const loco_cuda_gpt_config *cfg,
                                          const loco_tensor_table *table, int B, int T,
                                          loco_error *err)
{
    *gpt = NULL;
    LOCO_TRY(check_config(cfg, err));
    if (B < 1 || T < 1 || T > cfg->ctx) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "GPU model buffers for B = %d, T = %d: need B >= 1, 1 <= T <= ctx",
                              B, T);
    }
    loco_cuda_gpt *m = (loco_cuda_gpt *)calloc(1, sizeof *m);
    if (NULL == m) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for the GPU model");
    }
    m->ctx = ctx;
    m->cfg = *cfg;
    m->L = cfg->n_layer;
    m->C = cfg->n_embd;
    m->NH = cfg->n_head;
    m->NKV = cfg->n_kv_head;
    m->hs = m->C / m->NH;
    m->kv_dim = m->NKV * m->hs;
    m->V = cfg->vocab;
    for (int l = 0; l < m->L; l++) {
        m->qkv_dim[l] = m->C + (cfg->kv_src[l] == l ? 2 * m->kv_dim : 0);
    }
    m->max_B = B;
    m->max_T = T;
    m->n_params = table->numel;
    loco_status st = read_offsets(m, table, err);
    size_t BT = (size_t)B * T;
    size_t act_bytes = layout_acts(m, NULL, B, T);
    if (LOCO_OK == st) {
        st = loco_cuda_alloc((void **)&m->params, m->n_params * sizeof(float), err);
    }
    if (LOCO_OK == st) {
        st = loco_cuda_alloc((void **)&m->params16, m->n_params * sizeof(bf16), err);
    }
    if (LOCO_OK == st) {
        st = loco_cuda_alloc((void **)&m->grads, m->n_params * sizeof(float), err);
    }
    if (LOCO_OK == st) {
        st = loco_cuda_alloc((void **)&m->acts, act_bytes, err);
    }
    if (LOCO_OK == st) {
        cudaError_t e = cudaMallocHost(&m->host_tokens, 2 * BT * sizeof(uint16_t));
        if (cudaSuccess == e) {
            e = cudaMallocHost(&m->host_plan, loco_encoder_plan_ints((int)BT) * sizeof(int));
        }
        m->host_counts = (int *)malloc((size_t)m->V * sizeof(int));
        if (cudaSuccess != e || NULL == m->host_counts) {
            st = loco_error_set(err, LOCO_ERR_NOMEM, "out of pinned host memory for staging");
        }
    }
    if (LOCO_OK != st) {
        loco_cuda_gpt_free(m);
        return st;
    }
    layout_acts(m, m->acts, B, T);
    *gpt = m;
    return LOCO_OK;
}

extern "C" void loco_cuda_gpt_free(loco_cuda_gpt *gpt)
{
    if (NULL == gpt) {
        return;
    }
    cudaStreamSynchronize(gpt->ctx->stream);
    loco_cuda_free(gpt->params);
    loco_cuda_free(gpt->params16);
    loco_cuda_free(gpt->grads);
    loco_cuda_free(gpt->acts);
    for (int i = 0; NULL != gpt->prof.events && i < 2 * PROF_MAX; i++) {
        cudaEventDestroy(gpt->prof.events[i]);
    }
    free(gpt->prof.events);
    cudaFreeHost(gpt->host_tokens);
    cudaFreeHost(gpt->host_plan);
    free(gpt->host_counts);
    free(gpt);
}

extern "C" float *loco_cuda_gpt_params(loco_cuda_gpt *gpt) { return gpt->params; }
extern "C" uint16_t *loco_cuda_gpt_params_bf16(loco_cuda_gpt *gpt)
{
    return reinterpret_cast<uint16_t *>(gpt->params16);
}
extern "C" float *loco_cuda_gpt_grads(loco_cuda_gpt *gpt) { return gpt->grads; }
extern "C" loco_cuda_ctx *loco_cuda_gpt_ctx(loco_cuda_gpt *gpt) { return gpt->ctx; }

extern "C" void loco_cuda_gpt_set_grad_hook(loco_cuda_gpt *gpt, loco_cuda_grad_hook hook,
                                            void *user)
{
    gpt->hook = hook;
    gpt->hook_user = user;
}

/* ---------------------------------------------------------------------------------------------
 * Parameter copies */

extern "C" loco_status loco_cuda_gpt_refresh_bf16(loco_cuda_gpt *gpt, loco_error *err)
{
    loco_status st = loco_bf16_from_f32_cuda(reinterpret_cast<loco_bf16 *>(gpt->params16),
                                             gpt->params, gpt->n_params, gpt->ctx->stream);
    return LOCO_OK == st ? loco_cuda_sync(gpt->ctx, err)
                         : loco_cuda_error(err, st, "making the bf16 parameter copy");
}

extern "C" loco_status loco_cuda_gpt_upload_params(loco_cuda_gpt *gpt, const float *host,
                                                   loco_error *err)
{
    LOCO_TRY(loco_cuda_upload(gpt->ctx, gpt->params, host, gpt->n_params * sizeof(float), err));
    return loco_cuda_gpt_refresh_bf16(gpt, err);
}

extern "C" loco_status loco_cuda_gpt_download_params(loco_cuda_gpt *gpt, float *host,
                                                     loco_error *err)
{
    return loco_cuda_download(gpt->ctx, host, gpt->params, gpt->n_params * sizeof(float), err);
}

extern "C" loco_status loco_cuda_gpt_download_grads(loco_cuda_gpt *gpt, float *host,
                                                    loco_error *err)
{
    return loco_cuda_download(gpt->ctx, host, gpt->grads, gpt->n_params * sizeof(float), err);
}

extern "C" loco_status loco_cuda_gpt_zero_grad(loco_cuda_gpt *gpt, loco_error *err)
{
    cudaError_t e = cudaMemsetAsync(gpt->grads, 0, gpt->n_params * sizeof(float),
                                    gpt->ctx->stream);
    if (cudaSuccess != e) {
        return loco_cuda_error(err, loco_cuda_fail(e, "cudaMemsetAsync", __FILE__, __LINE__),
                               "zeroing the gradients");
    }
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_gpt_download_logits(loco_cuda_gpt *gpt, float *host,
                                                     loco_error *err)
{
    if (gpt->backward_ready || 0 == gpt->B) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "GPU logits exist only after a forward without targets (with "
                              "targets they are replaced by the loss gradient)");
    }
    size_t n = (size_t)gpt->B * gpt->T * gpt->V;
    uint16_t *tmp = (uint16_t *)malloc(n * sizeof(uint16_t));
    if (NULL == tmp) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for %zu logits", n);
    }
    loco_status st = loco_cuda_download(gpt->ctx, tmp, gpt->logits, n * sizeof(uint16_t), err);
    for (size_t i = 0; LOCO_OK == st && i < n; i++) {
        host[i] = loco_bf16_to_f32(tmp[i]);
    }
    free(tmp);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Profile */

static void prof_begin(loco_cuda_gpt *m, const char *name)
{
    gpt_profile *p = &m->prof;
    if (!p->on || p->n >= PROF_MAX) {
        return;
    }
    int i = 0;
    while (i < p->n_names && 0 != strcmp(p->names[i], name)) {
        i++;
    }
    if (i == p->n_names && i < PROF_LABELS) {
        p->names[p->n_names++] = name;
    }
    p->label[p->n] = i < PROF_LABELS ? i : PROF_LABELS - 1;
    cudaEventRecord(p->events[2 * p->n], m->ctx->stream);
}

static void prof_end(loco_cuda_gpt *m)
{
    gpt_profile *p = &m->prof;
    if (p->on && p->n < PROF_MAX) {
        cudaEventRecord(p->events[2 * p->n + 1], m->ctx->stream);
        p->n++;
    }
}

/* Add up the recorded calls; the stream must be synchronized. */
static void prof_collect(loco_cuda_gpt *m)
{
    gpt_profile *p = &m->prof;
    for (int i = 0; i < p->n; i++) {
        float ms = 0.0f;
        if (cudaSuccess == cudaEventElapsedTime(&ms, p->events[2 * i], p->events[2 * i + 1])) {
            p->ms[p->label[i]] += ms;
            p->calls[p->label[i]]++;
        }
    }
    p->n = 0;
}

/* Time a layer call when profiling; return its status either way. */
#define TIMED(name, call)                          \
    do {                                           \
        prof_begin(m, name);                       \
        loco_status timed_st_ = (call);            \
        prof_end(m);                               \
        if (LOCO_OK != timed_st_) {                \
            return timed_st_;                      \
        }                                          \
    } while (0)

extern "C" loco_status loco_cuda_gpt_profile(loco_cuda_gpt *gpt, bool on, loco_error *err)
{
    gpt_profile *p = &gpt->prof;
    if (on && NULL == p->events) {
        p->events = (cudaEvent_t *)calloc(2 * PROF_MAX, sizeof(cudaEvent_t));
        if (NULL == p->events) {
            return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for profile events");
        }
        for (int i = 0; i < 2 * PROF_MAX; i++) {
            cudaError_t e = cudaEventCreate(&p->events[i]);
            if (cudaSuccess != e) {
                return loco_cuda_error(err, loco_cuda_fail(e, "cudaEventCreate", __FILE__,
                                                           __LINE__),
                                       "creating profile events");
            }
        }
    }
    p->on = on;
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_gpt_profile_report(loco_cuda_gpt *gpt, FILE *out,
                                                    loco_error *err)
{
    gpt_profile *p = &gpt->prof;
    LOCO_TRY(loco_cuda_sync(gpt->ctx, err));
    prof_collect(gpt);
    int steps = p->steps > 0 ? p->steps : 1;
    double total = 0.0;
    for (int i = 0; i < p->n_names; i++) {
        total += p->ms[i];
    }
    fprintf(out, "GPU time per step by layer (%d steps, CUDA events): %.2f ms\n", p->steps,
            total / steps);
    bool done[PROF_LABELS] = {false};
    for (int k = 0; k < p->n_names; k++) { /* largest first */
        int best = -1;
        for (int i = 0; i < p->n_names; i++) {
            best = !done[i] && (best < 0 || p->ms[i] > p->ms[best]) ? i : best;
        }
        done[best] = true;
        fprintf(out, "  %-28s %8.3f ms %5.1f%%  %5.1f calls\n", p->names[best],
                p->ms[best] / steps, total > 0 ? 100.0 * p->ms[best] / total : 0.0,
                (double)p->calls[best] / steps);
    }
    memset(p->ms, 0, sizeof p->ms);
    memset(p->calls, 0, sizeof p->calls);
    p->steps = 0;
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Forward: src/model.c's loco_model_forward, layer for layer. */

#define P16(off) (reinterpret_cast<const loco_bf16 *>(m->params16 + (off)))
#define A16(p) (reinterpret_cast<loco_bf16 *>(p))
#define CA16(p) (reinterpret_cast<const loco_bf16 *>(p))

static loco_status forward_queue(loco_cuda_gpt *m, bool with_targets)
{
    int B = m->B, T = m->T, N = B * T, C = m->C, V = m->V;
    cudaStream_t s = m->ctx->stream;
    const loco_cuda_blas *blas = &m->ctx->blas;
    size_t token_bytes = (with_targets ? 2 : 1) * (size_t)N * sizeof(uint16_t);
    /* tokens then targets, contiguous in both staging and device buffers */
    CUDA_TRY(cudaMemcpyAsync(m->tokens, m->host_tokens, token_bytes, cudaMemcpyHostToDevice, s));
    TIMED("encoder", loco_encoder_forward_cuda(A16(m->encoded), m->tokens, P16(m->wte), P16(m->wpe),
                                               B, T, C, s));
    const bf16 *residual = m->encoded; /* (B, T, C) */
    for (int l = 0; l < m->L; l++) {
        const layer_offsets *o = &m->off[l];
        layer_acts *a = &m->layer[l];
        int src = m->cfg.kv_src[l];
        const bf16 *kv = m->layer[src].qkv; /* producer's [Q | K | V] rows */
        TIMED("layernorm",
              loco_layernorm_forward_cuda(A16(a->ln1), a->ln1_mean, a->ln1_rstd, CA16(residual),
                                          P16(o->ln1w), P16(o->ln1b), N, C, s));
        TIMED("matmul qkv", loco_matmul_forward_cuda(blas, A16(a->qkv), CA16(a->ln1), P16(o->qkvw),
                                                     P16(o->qkvb), NULL, N, C, m->qkv_dim[l], s));
        TIMED("attention",
              loco_attention_forward_cuda(A16(a->atty), a->lse, CA16(a->qkv), m->qkv_dim[l],
                                          CA16(kv + C), CA16(kv + C + m->kv_dim), m->qkv_dim[src],
                                          B, T, m->NH, m->NKV, m->hs, s));
        TIMED("matmul attn.c_proj",
              loco_matmul_forward_cuda(blas, A16(a->res2), CA16(a->atty), P16(o->attprojw),
                                       P16(o->attprojb), CA16(residual), N, C, C, s));
        TIMED("layernorm",
              loco_layernorm_forward_cuda(A16(a->ln2), a->ln2_mean, a->ln2_rstd, CA16(a->res2),
                                          P16(o->ln2w), P16(o->ln2b), N, C, s));
        TIMED("matmul c_fc + gelu",
              loco_matmul_gelu_forward_cuda(blas, A16(a->fch_gelu), A16(a->fch), CA16(a->ln2),
                                            P16(o->fcw), P16(o->fcb), N, C, 4 * C, s));
        TIMED("matmul mlp.c_proj",
              loco_matmul_forward_cuda(blas, A16(a->res3), CA16(a->fch_gelu), P16(o->fcprojw),
                                       P16(o->fcprojb), CA16(a->res2), N, 4 * C, C, s));
        residual = a->res3;
    }
    TIMED("layernorm",
          loco_layernorm_forward_cuda(A16(m->lnf), m->lnf_mean, m->lnf_rstd, CA16(residual),
                                      P16(m->lnfw), P16(m->lnfb), N, C, s));
    TIMED("matmul lm head", loco_matmul_forward_cuda(blas, A16(m->logits), CA16(m->lnf),
                                                     P16(m->wte), NULL, NULL, N, C, V, s));
    if (with_targets) {
        TIMED("cross-entropy",
              loco_crossentropy_forward_cuda(m->losses, NULL, A16(m->logits), m->tokens + N,
                                             1.0f / (float)N, N, V, s));
        TIMED("cross-entropy",
              loco_sum_cuda(m->ctx->reduce_scratch + loco_sum_scratch_doubles(),
                            m->ctx->reduce_scratch, m->losses, (size_t)N, false, s));
        CUDA_TRY(cudaMemcpyAsync(m->ctx->reduce_host,
                                 m->ctx->reduce_scratch + loco_sum_scratch_doubles(),
                                 sizeof(double), cudaMemcpyDeviceToHost, s));
    }
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_gpt_forward(loco_cuda_gpt *gpt, const uint16_t *tokens,
                                             const uint16_t *targets, int B, int T, float *loss,
                                             loco_error *err)
{
    loco_cuda_gpt *m = gpt;
    if (B < 1 || T < 1 || B > m->max_B || T > m->max_T) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "batch %d x %d tokens: this GPU model was allocated for at most "
                              "%d x %d",
                              B, T, m->max_B, m->max_T);
    }
    size_t N = (size_t)B * T;
    /* The previous step's copies out of the staging buffers finished at its synchronization. */
    memcpy(m->host_tokens, tokens, N * sizeof(uint16_t));
    if (NULL != targets) {
        memcpy(m->host_tokens + N, targets, N * sizeof(uint16_t));
    }
    m->B = B;
    m->T = T;
    m->backward_ready = false;
    loco_status st = forward_queue(m, NULL != targets);
    if (LOCO_OK == st && NULL != targets) {
        /* The encoder backward's row order, built while the GPU runs the forward. */
        m->n_groups = loco_encoder_plan_build(m->host_plan, m->host_counts, tokens, (int)N, m->V);
        cudaError_t e = cudaMemcpyAsync(m->plan, m->host_plan,
                                        (2 + 2 * (size_t)m->n_groups + N) * sizeof(int),
                                        cudaMemcpyHostToDevice, m->ctx->stream);
        if (cudaSuccess != e) {
            st = loco_cuda_fail(e, "cudaMemcpyAsync(plan)", __FILE__, __LINE__);
        }
    }
    if (LOCO_OK != st) {
        return loco_cuda_error(err, st, "GPU forward");
    }
    LOCO_TRY(loco_cuda_sync(m->ctx, err));
    if (m->prof.on) {
        prof_collect(m);
        m->prof.steps++;
    }
    m->backward_ready = NULL != targets;
    if (NULL != loss) {
        *loss = NULL != targets ? (float)(*m->ctx->reduce_host / (double)N) : NAN;
    }
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Backward: src/model.c's loco_model_backward, layer for layer. */

#define G(off) (m->grads + (off))

/* Tell the hook that the gradients of layer `layer` (-1: embeddings and final LayerNorm) are
 * final. A block's tensors run from its ln_1.weight to the end of its mlp.c_proj.bias. */
static void call_hook(loco_cuda_gpt *m, int layer)
{
    if (NULL == m->hook) {
        return;
    }
    if (layer >= 0) {
        m->hook(m->hook_user, layer, m->off[layer].ln1w, m->off[layer].fcprojb + m->C);
    } else {
        m->hook(m->hook_user, -1, m->wte, m->wpe + (size_t)m->cfg.ctx * m->C);
        m->hook(m->hook_user, -1, m->lnfw, m->lnfb + m->C);
    }
}

static loco_status backward_queue(loco_cuda_gpt *m)
{
    int B = m->B, T = m->T, N = B * T, C = m->C, V = m->V, L = m->L;
    cudaStream_t s = m->ctx->stream;
    const loco_cuda_blas *blas = &m->ctx->blas;
    float *scratch = m->scratch;

    prof_begin(m, "bwd zero dresidual");
    CUDA_TRY(cudaMemsetAsync(m->dresidual, 0, (size_t)N * C * sizeof(bf16), s));
    prof_end(m);
    /* the logits hold dloss/dlogits since the forward */
    TIMED("bwd matmul lm head",
          loco_matmul_backward_cuda(blas, A16(m->dln), G(m->wte), NULL, scratch, CA16(m->logits),
                                    CA16(m->lnf), P16(m->wte), N, C, V, s));
    TIMED("bwd layernorm",
          loco_layernorm_backward_cuda(A16(m->dresidual), G(m->lnfw), G(m->lnfb), scratch,
                                       CA16(m->dln), CA16(m->layer[L - 1].res3), P16(m->lnfw),
                                       m->lnf_mean, m->lnf_rstd, N, C, s));
    for (int l = L - 1; l >= 0; l--) {
        const layer_offsets *o = &m->off[l];
        const layer_acts *a = &m->layer[l];
        const bf16 *residual = l > 0 ? m->layer[l - 1].res3 : m->encoded;
        int src = m->cfg.kv_src[l];
        const bf16 *kv = m->layer[src].qkv;
        bf16 *dkv = m->dqkv[src];
        bool producer = src == l;
        bf16 *dq = producer ? m->dqkv[l] : m->dq; /* rows of stride qkv_dim[l] */
        /* The highest reader of a K/V slot (first in this reverse loop) starts its sum. */
        bool first_reader = true;
        for (int above = l + 1; above < L; above++) {
            first_reader = first_reader && m->cfg.kv_src[above] != src;
        }
        /* MLP */
        TIMED("bwd matmul mlp.c_proj",
              loco_matmul_backward_cuda(blas, A16(m->dfch), G(o->fcprojw), G(o->fcprojb), scratch,
                                        CA16(m->dresidual), CA16(a->fch_gelu), P16(o->fcprojw), N,
                                        4 * C, C, s));
        TIMED("bwd gelu", loco_gelu_backward_cuda(A16(m->dfch), CA16(a->fch), CA16(m->dfch),
                                                  (size_t)N * 4 * C, s));
        TIMED("bwd matmul c_fc",
              loco_matmul_backward_cuda(blas, A16(m->dln), G(o->fcw), G(o->fcb), scratch,
                                        CA16(m->dfch), CA16(a->ln2), P16(o->fcw), N, C, 4 * C, s));
        TIMED("bwd layernorm", loco_layernorm_backward_cuda(
                                   A16(m->dresidual), G(o->ln2w), G(o->ln2b), scratch, CA16(m->dln),
                                   CA16(a->res2), P16(o->ln2w), a->ln2_mean, a->ln2_rstd, N, C, s));
        /* attention */
        TIMED("bwd matmul attn.c_proj",
              loco_matmul_backward_cuda(blas, A16(m->datty), G(o->attprojw), G(o->attprojb),
                                        scratch, CA16(m->dresidual), CA16(a->atty),
                                        P16(o->attprojw), N, C, C, s));
        TIMED("bwd attention",
              loco_attention_backward_cuda(scratch, A16(dq), m->qkv_dim[l], A16(dkv + C),
                                           A16(dkv + C + m->kv_dim), first_reader, CA16(m->datty),
                                           CA16(a->atty), a->lse, CA16(a->qkv), m->qkv_dim[l],
                                           CA16(kv + C), CA16(kv + C + m->kv_dim), m->qkv_dim[src],
                                           B, T, m->NH, m->NKV, m->hs, s));
        /* A producer is the lowest reader of its K/V: [dQ | dK | dV] is complete here. */
        TIMED("bwd matmul qkv", loco_matmul_backward_cuda(blas, A16(m->dln), G(o->qkvw), G(o->qkvb),
                                                          scratch, CA16(dq), CA16(a->ln1),
                                                          P16(o->qkvw), N, C, m->qkv_dim[l], s));
        TIMED("bwd layernorm",
              loco_layernorm_backward_cuda(A16(m->dresidual), G(o->ln1w), G(o->ln1b), scratch,
                                           CA16(m->dln), CA16(residual), P16(o->ln1w), a->ln1_mean,
                                           a->ln1_rstd, N, C, s));
        call_hook(m, l);
    }
    TIMED("bwd encoder", loco_encoder_backward_cuda(G(m->wte), G(m->wpe), CA16(m->dresidual),
                                                    m->plan, m->n_groups, B, T, C, s));
    call_hook(m, -1);
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_gpt_backward(loco_cuda_gpt *gpt, loco_error *err)
{
    if (!gpt->backward_ready) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "backward needs a forward with targets first (and runs once per "
                              "forward)");
    }
    gpt->backward_ready = false;
    loco_status st = backward_queue(gpt);
    return LOCO_OK == st ? st : loco_cuda_error(err, st, "GPU backward");
}
