/* src/decode.c — incremental decoding with a K/V cache (see model.h): one token at a time
 * through the model, each producing layer appending its K and V rows to the cache, consumers
 * reading their producer's. Used for sampling; equals the full forward position by position.
 */
#include "src/layers.h"
#include "src/model_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct loco_kv_cache {
    int max_T;
    int len;         /* tokens decoded so far */
    size_t kv_numel; /* floats of K/V storage */
    float *kv;       /* (n_kv_layers, 2, NKV, max_T, hs): K then V per producing layer */
    float *x;        /* (C) residual stream */
    float *ln;       /* (C) */
    float *qkv;      /* (C + 2 kv_dim) */
    float *scores;   /* (max_T) */
    float *atty;     /* (C) */
    float *fch;      /* (4C) */
    float *fch_gelu; /* (4C) */
    float stats[2];  /* a LayerNorm's mean and rstd */
};

loco_status loco_kv_cache_init(loco_kv_cache **cache, const loco_model *model, int max_T,
                               loco_error *err)
{
    *cache = NULL;
    const loco_model *m = model;
    if (max_T < 1 || max_T > m->cfg.ctx) {
        return loco_error_set(err, LOCO_ERR_RANGE, "K/V cache of %d tokens: must be 1..ctx (%d)",
                              max_T, m->cfg.ctx);
    }
    loco_kv_cache *c = calloc(1, sizeof *c);
    if (NULL == c) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for a K/V cache");
    }
    size_t C = m->C;
    c->max_T = max_T;
    c->kv_numel = loco_model_kv_cache_numel(&m->cfg, max_T);
    size_t scratch =
        round16(C) * 3 + round16(C + 2 * (size_t)m->kv_dim) + round16(max_T) + 2 * round16(4 * C);
    c->kv = loco_alloc_aligned((round16(c->kv_numel) + scratch) * sizeof(float));
    if (NULL == c->kv) {
        size_t want = c->kv_numel;
        free(c);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for a K/V cache of %zu floats",
                              want);
    }
    float *cur = c->kv + round16(c->kv_numel);
    c->x = take(&cur, C);
    c->ln = take(&cur, C);
    c->qkv = take(&cur, C + 2 * (size_t)m->kv_dim);
    c->scores = take(&cur, (size_t)max_T);
    c->atty = take(&cur, C);
    c->fch = take(&cur, 4 * C);
    c->fch_gelu = take(&cur, 4 * C);
    *cache = c;
    return LOCO_OK;
}

void loco_kv_cache_free(loco_kv_cache *cache)
{
    if (NULL != cache) {
        free(cache->kv);
        free(cache);
    }
}

void loco_kv_cache_reset(loco_kv_cache *cache) { cache->len = 0; }
int loco_kv_cache_len(const loco_kv_cache *cache) { return cache->len; }
size_t loco_kv_cache_numel(const loco_kv_cache *cache) { return cache->kv_numel; }

/* y (OC) = W (OC, IC) · x (IC) + b (OC, may be NULL) (+ y when accumulate). */
static void matvec(float *y, const float *W, const float *b, const float *x, int OC, int IC,
                   bool accumulate)
{
#pragma omp parallel for schedule(static) if ((size_t)OC * IC >= 65536)
    for (int o = 0; o < OC; o++) {
        const float *row = W + (size_t)o * IC;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < IC; i++) {
            sum += row[i] * x[i];
        }
        sum += NULL != b ? b[o] : 0.0f;
        y[o] = accumulate ? y[o] + sum : sum;
    }
}

/* K or V of producing slot `slot`, head g: (max_T, hs). which = 0 for K, 1 for V. */
static float *cache_head(const loco_model *m, loco_kv_cache *c, int slot, int which, int g)
{
    size_t head = (size_t)c->max_T * m->hs;
    return c->kv + (((size_t)slot * 2 + which) * m->NKV + g) * head;
}

loco_status loco_model_decode_step(loco_model *model, loco_kv_cache *cache, uint16_t token,
                                   float *logits, loco_error *err)
{
    loco_model *m = model;
    loco_kv_cache *c = cache;
    int pos = c->len, C = m->C, hs = m->hs, group = m->NH / m->NKV;
    if (token >= m->cfg.vocab) {
        return loco_error_set(err, LOCO_ERR_RANGE, "token %u is not below the vocabulary size %d",
                              token, m->cfg.vocab);
    }
    if (pos >= c->max_T) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "K/V cache full: %d tokens decoded, capacity %d (model.ctx %d); "
                              "reset it and re-feed a shorter window",
                              pos, c->max_T, m->cfg.ctx);
    }
    if (LOCO_DEVICE_CPU != m->device) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "cached decoding runs on a CPU model: load the weights into a model "
                              "made by loco_model_init (loco sample does)");
    }
    float scale = 1.0f / sqrtf((float)hs);
    for (int i = 0; i < C; i++) {
        c->x[i] = m->w.wte[(size_t)token * C + i] + m->w.wpe[(size_t)pos * C + i];
    }
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const layer_weights *lw = &m->w.layer[l];
        int slot = m->kv_index[m->cfg.kv_src[l]];
        loco_layernorm_forward(c->ln, &c->stats[0], &c->stats[1], c->x, lw->ln1w, lw->ln1b, 1, C);
        matvec(c->qkv, lw->qkvw, lw->qkvb, c->ln, m->qkv_dim[l], C, false);
        if (m->kv_index[l] >= 0) { /* a producer writes its K/V row for this position */
            for (int g = 0; g < m->NKV; g++) {
                memcpy(cache_head(m, c, slot, 0, g) + (size_t)pos * hs, c->qkv + C + g * hs,
                       (size_t)hs * sizeof(float));
                memcpy(cache_head(m, c, slot, 1, g) + (size_t)pos * hs,
                       c->qkv + C + m->kv_dim + g * hs, (size_t)hs * sizeof(float));
            }
        }
        for (int h = 0; h < m->NH; h++) {
            const float *q = c->qkv + h * hs;
            const float *K = cache_head(m, c, slot, 0, h / group); /* (max_T, hs) */
            const float *Vh = cache_head(m, c, slot, 1, h / group);
            float maxv = -INFINITY, sum = 0.0f;
            for (int t = 0; t <= pos; t++) {
                float s = 0.0f;
                for (int i = 0; i < hs; i++) {
                    s += q[i] * K[(size_t)t * hs + i];
                }
                c->scores[t] = s * scale;
                maxv = c->scores[t] > maxv ? c->scores[t] : maxv;
            }
            for (int t = 0; t <= pos; t++) {
                c->scores[t] = expf(c->scores[t] - maxv);
                sum += c->scores[t];
            }
            float *out = c->atty + h * hs;
            memset(out, 0, (size_t)hs * sizeof(float));
            for (int t = 0; t <= pos; t++) {
                float p = c->scores[t] / sum;
                for (int i = 0; i < hs; i++) {
                    out[i] += p * Vh[(size_t)t * hs + i];
                }
            }
        }
        matvec(c->x, lw->attprojw, lw->attprojb, c->atty, C, C, true);
        loco_layernorm_forward(c->ln, &c->stats[0], &c->stats[1], c->x, lw->ln2w, lw->ln2b, 1, C);
        matvec(c->fch, lw->fcw, lw->fcb, c->ln, 4 * C, C, false);
        loco_gelu_forward(c->fch_gelu, c->fch, 4 * (size_t)C);
        matvec(c->x, lw->fcprojw, lw->fcprojb, c->fch_gelu, C, 4 * C, true);
    }
    loco_layernorm_forward(c->ln, &c->stats[0], &c->stats[1], c->x, m->w.lnfw, m->w.lnfb, 1, C);
    matvec(logits, m->w.wte, NULL, c->ln, m->cfg.vocab, C, false);
    c->len++;
    return LOCO_OK;
}
