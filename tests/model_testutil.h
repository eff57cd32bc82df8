/* tests/model_testutil.h — helpers shared by the model tests: tiny configurations, random
 * parameters and tokens, float/double comparisons that report the worst element. */
#ifndef LOCO_TESTS_MODEL_TESTUTIL_H
#define LOCO_TESTS_MODEL_TESTUTIL_H

#include "src/model.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The tiny test shape: 2 layers (or `layers`), 64 wide, 4 heads, 16 tokens, vocab 64. */
static inline void tiny_config(loco_model_config *cfg, int layers, int n_kv_head, int share)
{
    loco_model_config_default(cfg);
    cfg->n_layer = layers;
    cfg->n_embd = 64;
    cfg->n_head = 4;
    cfg->n_kv_head = n_kv_head;
    cfg->ctx = 16;
    cfg->vocab = 64;
    for (int l = 0; l < layers; l++) {
        cfg->kv_src[l] = l - l % share; /* groups of `share` consecutive layers */
    }
}

/* Parameters with every path alive: weights ~U(-0.2, 0.2), biases ~U(-0.1, 0.1), LayerNorm
 * weights 1 + U(-0.2, 0.2). Deterministic in seed. */
static inline void random_params(const loco_tensor_table *t, float *p, uint64_t seed)
{
    loco_rng rng;
    loco_rng_init(&rng, seed, 99);
    for (int i = 0; i < t->count; i++) {
        const loco_tensor *ti = &t->tensors[i];
        bool ln_weight = NULL != strstr(ti->name, "ln_") && NULL != strstr(ti->name, "weight");
        float scale = 2 == ti->ndim ? 0.4f : 0.2f;
        for (size_t j = 0; j < ti->numel; j++) {
            float u = loco_rng_uniform(&rng) - 0.5f;
            p[ti->offset + j] = ln_weight ? 1.0f + 0.4f * u : scale * u;
        }
    }
}

static inline void random_tokens(uint16_t *tokens, size_t n, int vocab, uint64_t seed)
{
    loco_rng rng;
    loco_rng_init(&rng, seed, 7);
    for (size_t i = 0; i < n; i++) {
        tokens[i] = (uint16_t)loco_rng_below(&rng, (uint32_t)vocab);
    }
}

/* max |a - b| / max(max |b|, floor): the normalised error of a against reference b. */
static inline double norm_err_fd(const float *a, const double *b, size_t n, double floor,
                                 size_t *worst)
{
    double max_ref = floor, max_diff = 0.0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        max_ref = fabs(b[i]) > max_ref ? fabs(b[i]) : max_ref;
        double d = fabs((double)a[i] - b[i]);
        if (d > max_diff || isnan(d)) {
            max_diff = isnan(d) ? INFINITY : d;
            *worst = i;
        }
    }
    return max_diff / max_ref;
}

static inline double norm_err_ff(const float *a, const float *b, size_t n, double floor,
                                 size_t *worst)
{
    double max_ref = floor, max_diff = 0.0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        max_ref = fabs((double)b[i]) > max_ref ? fabs((double)b[i]) : max_ref;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > max_diff || isnan(d)) {
            max_diff = isnan(d) ? INFINITY : d;
            *worst = i;
        }
    }
    return max_diff / max_ref;
}

/* Largest |x|: the scale against which gradients that should vanish (the K bias's: softmax
 * ignores a constant shift of every key score) are judged. */
static inline double max_abs_f(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        m = fabs((double)x[i]) > m ? fabs((double)x[i]) : m;
    }
    return m;
}

#endif /* LOCO_TESTS_MODEL_TESTUTIL_H */
