/* tests/test_model.c — the GPT model (src/model.h) on tiny shapes (2 layers, 64 wide, 16
 * tokens): configuration checks, parameter table, finite-difference gradients (double-precision
 * reference model and the fp32 model), fp32 vs reference for every variant (MHA, GQA, MQA,
 * cross-layer sharing), GQA == MHA with repeated K/V heads, shared K/V gradient == sum over untied
 * copies, cached decoding == full forward, thread-count independence, bad input.
 */
#include "src/model.h"
#include "src/model_ref.h"
#include "tests/model_testutil.h"

#include <criterion/criterion.h>
#include <omp.h>
#include <stdlib.h>

enum { TB = 2, TT = 16 }; /* batch and sequence length of the tests */

typedef struct variant {
    const char *name;
    int layers, n_kv_head, share;
} variant;

static const variant k_variants[] = {
    {"MHA", 2, 4, 1},
    {"GQA (n_kv_head 2)", 2, 2, 1},
    {"MQA", 2, 1, 1},
    {"cross-layer (groups of 2)", 2, 4, 2},
    {"GQA + cross-layer, 4 layers", 4, 2, 2},
};

static loco_model *make_model(const loco_model_config *cfg, int B, int T, uint64_t seed)
{
    loco_model *m = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_model_init(&m, cfg, B, T, &err), LOCO_OK, "%s", err.msg);
    random_params(loco_model_tensors(m), loco_model_params(m), seed);
    return m;
}

static double *params_as_double(const float *p, size_t n)
{
    double *d = malloc(n * sizeof(double));
    cr_assert_not_null(d);
    for (size_t i = 0; i < n; i++) {
        d[i] = p[i];
    }
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * Configuration and table */

Test(model_config, rejects_bad_fields_with_the_key_named)
{
    loco_model_config cfg;
    loco_error err = {0};
    tiny_config(&cfg, 4, 4, 1);
    cr_assert_eq(loco_model_config_validate(&cfg, &err), LOCO_OK);
    cfg.n_kv_head = 3;
    cr_assert_eq(loco_model_config_validate(&cfg, &err), LOCO_ERR_CONFIG);
    cr_assert(NULL != strstr(err.msg, "model.n_kv_head"), "%s", err.msg);
    tiny_config(&cfg, 4, 4, 1);
    cfg.kv_src[3] = 2;
    cfg.kv_src[2] = 1;
    loco_error_clear(&err);
    cr_assert_eq(loco_model_config_validate(&cfg, &err), LOCO_ERR_CONFIG);
    cr_assert(NULL != strstr(err.msg, "model.kv_src[3]") && NULL != strstr(err.msg, "producer"),
              "%s", err.msg);
    tiny_config(&cfg, 4, 4, 1);
    cfg.kv_src[1] = 2; /* a layer above */
    loco_error_clear(&err);
    cr_assert_eq(loco_model_config_validate(&cfg, &err), LOCO_ERR_CONFIG);
    cr_assert(NULL != strstr(err.msg, "model.kv_src[1]"), "%s", err.msg);
    tiny_config(&cfg, 2, 4, 1);
    cfg.n_embd = 66;
    cr_assert_eq(loco_model_config_validate(&cfg, NULL), LOCO_ERR_CONFIG);
    tiny_config(&cfg, 2, 4, 1);
    cfg.vocab = 70000;
    cr_assert_eq(loco_model_config_validate(&cfg, NULL), LOCO_ERR_CONFIG);
    tiny_config(&cfg, 2, 4, 1);
    cfg.n_layer = 0;
    cr_assert_eq(loco_model_config_validate(&cfg, NULL), LOCO_ERR_CONFIG);
}

Test(model_config, table_names_order_and_sizes)
{
    loco_model_config cfg;
    tiny_config(&cfg, 2, 2, 2); /* layer 1 reads layer 0's K/V */
    loco_tensor_table t;
    cr_assert_eq(loco_model_build_table(&cfg, &t, NULL), LOCO_OK);
    static const char *names[] = {"wte",
                                  "wpe",
                                  "h.0.ln_1.weight",
                                  "h.0.ln_1.bias",
                                  "h.0.attn.q.weight",
                                  "h.0.attn.k.weight",
                                  "h.0.attn.v.weight",
                                  "h.0.attn.q.bias",
                                  "h.0.attn.k.bias",
                                  "h.0.attn.v.bias",
                                  "h.0.attn.c_proj.weight",
                                  "h.0.attn.c_proj.bias",
                                  "h.0.ln_2.weight",
                                  "h.0.ln_2.bias",
                                  "h.0.mlp.c_fc.weight",
                                  "h.0.mlp.c_fc.bias",
                                  "h.0.mlp.c_proj.weight",
                                  "h.0.mlp.c_proj.bias",
                                  "h.1.ln_1.weight",
                                  "h.1.ln_1.bias",
                                  "h.1.attn.q.weight",
                                  "h.1.attn.q.bias",
                                  "h.1.attn.c_proj.weight",
                                  "h.1.attn.c_proj.bias",
                                  "h.1.ln_2.weight",
                                  "h.1.ln_2.bias",
                                  "h.1.mlp.c_fc.weight",
                                  "h.1.mlp.c_fc.bias",
                                  "h.1.mlp.c_proj.weight",
                                  "h.1.mlp.c_proj.bias",
                                  "ln_f.weight",
                                  "ln_f.bias"};
    int n = (int)(sizeof names / sizeof names[0]);
    cr_assert_eq(t.count, n);
    for (int i = 0; i < n; i++) {
        cr_assert_str_eq(t.tensors[i].name, names[i]);
    }
    cr_assert_eq(loco_tensor_table_validate(&t, NULL), LOCO_OK);
    int k = loco_tensor_table_find(&t, "h.0.attn.k.weight");
    cr_assert_eq(t.tensors[k].shape[0], 32); /* 2 KV heads x 16 */
    cr_assert_eq(t.tensors[k].shape[1], 64);
    size_t C = 64, KV = 32, V = 64, ctx = 16;
    size_t block = 4 * C + C * C + C + C * C + C + 4 * C * C + 4 * C + 4 * C * C + C;
    size_t expect = V * C + ctx * C + 2 * block + (2 * KV * C + 2 * KV) + 2 * C;
    cr_assert_eq(t.numel, expect, "parameters %zu, formula %zu", t.numel, expect);
    loco_tensor_table_free(&t);
}

Test(model_config, init_weights_is_gpt2_and_keyed_by_name)
{
    loco_model_config a, b;
    tiny_config(&a, 2, 4, 1);
    tiny_config(&b, 2, 1, 2);
    loco_model *ma = NULL, *mb = NULL;
    cr_assert_eq(loco_model_init(&ma, &a, 1, 4, NULL), LOCO_OK);
    cr_assert_eq(loco_model_init(&mb, &b, 1, 4, NULL), LOCO_OK);
    loco_model_init_weights(ma, 5);
    loco_model_init_weights(mb, 5);
    const loco_tensor_table *ta = loco_model_tensors(ma), *tb = loco_model_tensors(mb);
    const char *same[] = {"wte", "h.1.mlp.c_fc.weight", "h.0.attn.q.weight"};
    for (int i = 0; i < 3; i++) {
        const loco_tensor *x = &ta->tensors[loco_tensor_table_find(ta, same[i])];
        const loco_tensor *y = &tb->tensors[loco_tensor_table_find(tb, same[i])];
        cr_assert_arr_eq(loco_model_params(ma) + x->offset, loco_model_params(mb) + y->offset,
                         x->numel * sizeof(float), "%s differs between variants", same[i]);
    }
    const loco_tensor *wte = &ta->tensors[loco_tensor_table_find(ta, "wte")];
    double sum2 = 0.0;
    for (size_t i = 0; i < wte->numel; i++) {
        sum2 +=
            (double)loco_model_params(ma)[wte->offset + i] * loco_model_params(ma)[wte->offset + i];
    }
    double std = sqrt(sum2 / wte->numel);
    cr_assert(fabs(std - 0.02) < 0.002, "wte std %g", std);
    const loco_tensor *ln = &ta->tensors[loco_tensor_table_find(ta, "h.1.ln_2.weight")];
    const loco_tensor *bias = &ta->tensors[loco_tensor_table_find(ta, "h.1.mlp.c_fc.bias")];
    for (size_t i = 0; i < ln->numel; i++) {
        cr_assert_eq(loco_model_params(ma)[ln->offset + i], 1.0f);
    }
    for (size_t i = 0; i < bias->numel; i++) {
        cr_assert_eq(loco_model_params(ma)[bias->offset + i], 0.0f);
    }
    loco_model_free(ma);
    loco_model_free(mb);
}

/* ---------------------------------------------------------------------------------------------
 * Finite differences on the double-precision reference: its backward is the oracle. */

static void fd_check_reference(const variant *v)
{
    loco_model_config cfg;
    tiny_config(&cfg, v->layers, v->n_kv_head, v->share);
    loco_tensor_table t;
    cr_assert_eq(loco_model_build_table(&cfg, &t, NULL), LOCO_OK);
    float *pf = malloc(t.numel * sizeof(float));
    random_params(&t, pf, 17);
    double *p = params_as_double(pf, t.numel), *g = calloc(t.numel, sizeof(double));
    uint16_t tokens[TB * TT], targets[TB * TT];
    random_tokens(tokens, TB * TT, cfg.vocab, 1);
    random_tokens(targets, TB * TT, cfg.vocab, 2);
    double loss, lp, lm;
    cr_assert_eq(loco_ref_model_run(&cfg, p, tokens, targets, TB, TT, &loss, NULL, g, NULL, NULL),
                 LOCO_OK);
    const double h = 1e-5;
    loco_rng rng;
    loco_rng_init(&rng, 3, 3);
    for (int i = 0; i < t.count; i++) {
        const loco_tensor *ti = &t.tensors[i];
        size_t largest = 0;
        for (size_t j = 1; j < ti->numel; j++) {
            largest = fabs(g[ti->offset + j]) > fabs(g[ti->offset + largest]) ? j : largest;
        }
        size_t picks[3] = {largest, loco_rng_below(&rng, (uint32_t)ti->numel), ti->numel - 1};
        for (int k = 0; k < 3; k++) {
            size_t j = ti->offset + picks[k];
            double orig = p[j];
            p[j] = orig + h;
            loco_ref_model_run(&cfg, p, tokens, targets, TB, TT, &lp, NULL, NULL, NULL, NULL);
            p[j] = orig - h;
            loco_ref_model_run(&cfg, p, tokens, targets, TB, TT, &lm, NULL, NULL, NULL, NULL);
            p[j] = orig;
            double fd = (lp - lm) / (2 * h);
            cr_assert(fabs(fd - g[j]) <= 1e-8 + 1e-6 * fabs(g[j]),
                      "%s: %s[%zu]: analytic %.12g, finite difference %.12g", v->name, ti->name,
                      picks[k], g[j], fd);
        }
    }
    cr_assert(isfinite(loss) && loss > 0.0);
    free(pf);
    free(p);
    free(g);
    loco_tensor_table_free(&t);
}

Test(model_fd, reference_mha) { fd_check_reference(&k_variants[0]); }
Test(model_fd, reference_gqa) { fd_check_reference(&k_variants[1]); }
Test(model_fd, reference_mqa) { fd_check_reference(&k_variants[2]); }
Test(model_fd, reference_cross_layer) { fd_check_reference(&k_variants[3]); }
Test(model_fd, reference_gqa_cross_layer_4_layers) { fd_check_reference(&k_variants[4]); }

/* ---------------------------------------------------------------------------------------------
 * The fp32 model against the reference, and finite differences on the fp32 model itself */

static void check_against_reference(const variant *v)
{
    loco_model_config cfg;
    tiny_config(&cfg, v->layers, v->n_kv_head, v->share);
    loco_model *m = make_model(&cfg, TB, TT, 23);
    const loco_tensor_table *t = loco_model_tensors(m);
    uint16_t tokens[TB * TT], targets[TB * TT];
    random_tokens(tokens, TB * TT, cfg.vocab, 4);
    random_tokens(targets, TB * TT, cfg.vocab, 5);
    float loss;
    loco_error err = {0};
    cr_assert_eq(loco_model_forward(m, tokens, targets, TB, TT, &loss, &err), LOCO_OK, "%s",
                 err.msg);
    size_t nlogits = (size_t)TB * TT * cfg.vocab;
    float *logits = malloc(nlogits * sizeof(float));
    memcpy(logits, loco_model_logits(m), nlogits * sizeof(float));
    loco_model_zero_grad(m);
    cr_assert_eq(loco_model_backward(m, &err), LOCO_OK, "%s", err.msg);

    double *p = params_as_double(loco_model_params(m), t->numel);
    double *g = calloc(t->numel, sizeof(double)), *logits_ref = malloc(nlogits * sizeof(double));
    double loss_ref;
    cr_assert_eq(
        loco_ref_model_run(&cfg, p, tokens, targets, TB, TT, &loss_ref, logits_ref, g, NULL, NULL),
        LOCO_OK);
    cr_assert(fabs(loss - loss_ref) <= 1e-6 * loss_ref, "%s: loss %.9g vs reference %.9g", v->name,
              loss, loss_ref);
    size_t worst;
    double e = norm_err_fd(logits, logits_ref, nlogits, 1e-6, &worst);
    cr_assert(e <= 1e-5, "%s: logits error %.3g at %zu", v->name, e, worst);
    double floor = 1e-3 * max_abs_f(loco_model_grads(m), t->numel);
    for (int i = 0; i < t->count; i++) {
        const loco_tensor *ti = &t->tensors[i];
        e = norm_err_fd(loco_model_grads(m) + ti->offset, g + ti->offset, ti->numel, floor, &worst);
        cr_assert(e <= 1e-4, "%s: gradient of %s: normalised error %.3g at %zu (%g vs %g)", v->name,
                  ti->name, e, worst, (double)loco_model_grads(m)[ti->offset + worst],
                  g[ti->offset + worst]);
    }

    /* Central differences (in double) of the fp32 loss, on each tensor's largest gradients. */
    float *params = loco_model_params(m);
    const float h = 1e-2f;
    for (int i = 0; i < t->count; i++) {
        const loco_tensor *ti = &t->tensors[i];
        const float *gi = loco_model_grads(m) + ti->offset;
        size_t largest = 0;
        for (size_t j = 1; j < ti->numel; j++) {
            largest = fabsf(gi[j]) > fabsf(gi[largest]) ? j : largest;
        }
        size_t j = ti->offset + largest;
        float orig = params[j], lp, lm;
        params[j] = orig + h;
        loco_model_forward(m, tokens, targets, TB, TT, &lp, NULL);
        params[j] = orig - h;
        loco_model_forward(m, tokens, targets, TB, TT, &lm, NULL);
        params[j] = orig;
        double fd = ((double)lp - (double)lm) / (2.0 * h);
        cr_assert(fabs(fd - gi[largest]) <= 5e-4 + 3e-2 * fabs(gi[largest]),
                  "%s: fp32 %s[%zu]: analytic %.6g, finite difference %.6g", v->name, ti->name,
                  largest, (double)gi[largest], fd);
    }
    free(logits);
    free(logits_ref);
    free(p);
    free(g);
    loco_model_free(m);
}

Test(model_fp32, mha_matches_reference) { check_against_reference(&k_variants[0]); }
Test(model_fp32, gqa_matches_reference) { check_against_reference(&k_variants[1]); }
Test(model_fp32, mqa_matches_reference) { check_against_reference(&k_variants[2]); }
Test(model_fp32, cross_layer_matches_reference) { check_against_reference(&k_variants[3]); }
Test(model_fp32, gqa_cross_layer_4_layers_matches_reference)
{
    check_against_reference(&k_variants[4]);
}

/* ---------------------------------------------------------------------------------------------
 * GQA equals MHA whose K/V heads are the GQA heads repeated */

Test(model_kv, gqa_equals_mha_with_repeated_kv_heads)
{
    loco_model_config cg, cm;
    tiny_config(&cg, 2, 2, 1);
    tiny_config(&cm, 2, 4, 1);
    int hs = 16, r = 2;
    loco_model *g = make_model(&cg, TB, TT, 31);
    loco_model *m = make_model(&cm, TB, TT, 0);
    const loco_tensor_table *tg = loco_model_tensors(g), *tm = loco_model_tensors(m);
    for (int i = 0; i < tm->count; i++) {
        const loco_tensor *dst = &tm->tensors[i];
        const loco_tensor *src = &tg->tensors[loco_tensor_table_find(tg, dst->name)];
        float *to = loco_model_params(m) + dst->offset;
        const float *from = loco_model_params(g) + src->offset;
        bool kv = NULL != strstr(dst->name, "attn.k.") || NULL != strstr(dst->name, "attn.v.");
        if (!kv) {
            memcpy(to, from, dst->numel * sizeof(float));
            continue;
        }
        size_t row = 2 == dst->ndim ? (size_t)dst->shape[1] : 1; /* elements per output row */
        for (int head = 0; head < 4; head++) {                   /* MHA head i <- GQA head i / r */
            memcpy(to + (size_t)head * hs * row, from + (size_t)(head / r) * hs * row,
                   (size_t)hs * row * sizeof(float));
        }
    }
    uint16_t tokens[TB * TT], targets[TB * TT];
    random_tokens(tokens, TB * TT, 64, 8);
    random_tokens(targets, TB * TT, 64, 9);
    float lg, lm;
    cr_assert_eq(loco_model_forward(g, tokens, targets, TB, TT, &lg, NULL), LOCO_OK);
    cr_assert_eq(loco_model_forward(m, tokens, targets, TB, TT, &lm, NULL), LOCO_OK);
    size_t worst, nlogits = (size_t)TB * TT * 64;
    double e = norm_err_ff(loco_model_logits(g), loco_model_logits(m), nlogits, 1e-6, &worst);
    cr_assert(e <= 1e-6, "logits differ: %.3g at %zu", e, worst);
    loco_model_zero_grad(g);
    loco_model_zero_grad(m);
    cr_assert_eq(loco_model_backward(g, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
    double floor = 1e-3 * max_abs_f(loco_model_grads(g), tg->numel);
    for (int i = 0; i < tg->count; i++) {
        const loco_tensor *a = &tg->tensors[i];
        const loco_tensor *b = &tm->tensors[loco_tensor_table_find(tm, a->name)];
        const float *ga = loco_model_grads(g) + a->offset, *gb = loco_model_grads(m) + b->offset;
        bool kv = NULL != strstr(a->name, "attn.k.") || NULL != strstr(a->name, "attn.v.");
        float *want = malloc(a->numel * sizeof(float));
        if (!kv) {
            memcpy(want, gb, a->numel * sizeof(float));
        } else { /* GQA head g's gradient = sum over the r MHA heads that copy it */
            size_t row = 2 == a->ndim ? (size_t)a->shape[1] : 1, block = (size_t)hs * row;
            memset(want, 0, a->numel * sizeof(float));
            for (int head = 0; head < 4; head++) {
                for (size_t j = 0; j < block; j++) {
                    want[(size_t)(head / r) * block + j] += gb[(size_t)head * block + j];
                }
            }
        }
        e = norm_err_ff(ga, want, a->numel, floor, &worst);
        cr_assert(e <= 1e-4, "gradient of %s: %.3g at %zu (%g vs %g)", a->name, e, worst,
                  (double)ga[worst], (double)want[worst]);
        free(want);
    }
    loco_model_free(g);
    loco_model_free(m);
}

/* ---------------------------------------------------------------------------------------------
 * A shared K/V projection's gradient is the sum of what untied copies would get */

Test(model_kv, shared_kv_gradient_is_sum_over_untied_readers)
{
    loco_model_config cfg;
    tiny_config(&cfg, 4, 2, 2); /* kv_src = 0 0 2 2 */
    loco_model *m = make_model(&cfg, TB, TT, 41);
    const loco_tensor_table *t = loco_model_tensors(m);
    size_t n = t->numel, C = 64, KV = 32;
    double *p = params_as_double(loco_model_params(m), n);
    uint16_t tokens[TB * TT], targets[TB * TT];
    random_tokens(tokens, TB * TT, 64, 10);
    random_tokens(targets, TB * TT, 64, 11);

    /* Untied: consumers 1 and 3 get their own copies of their producer's K/V weights. */
    loco_ref_untied u;
    memset(&u, 0, sizeof u);
    double *copies[LOCO_MAX_LAYERS] = {0};
    for (int l = 1; l < 4; l += 2) {
        int src = cfg.kv_src[l];
        char name[64];
        double *c = calloc(2 * KV * C + 2 * KV, sizeof(double));
        snprintf(name, sizeof name, "h.%d.attn.k.weight", src); /* k then v weight: adjacent */
        memcpy(c, p + t->tensors[loco_tensor_table_find(t, name)].offset,
               2 * KV * C * sizeof(double));
        snprintf(name, sizeof name, "h.%d.attn.k.bias", src);
        memcpy(c + 2 * KV * C, p + t->tensors[loco_tensor_table_find(t, name)].offset,
               2 * KV * sizeof(double));
        copies[l] = c;
        u.kvw[l] = c;
        u.kvb[l] = c + 2 * KV * C;
        u.dkvw[l] = calloc(2 * KV * C + 2 * KV, sizeof(double));
        u.dkvb[l] = u.dkvw[l] + 2 * KV * C;
    }
    double loss_t, loss_u;
    double *g_t = calloc(n, sizeof(double)), *g_u = calloc(n, sizeof(double));
    cr_assert_eq(
        loco_ref_model_run(&cfg, p, tokens, targets, TB, TT, &loss_t, NULL, g_t, NULL, NULL),
        LOCO_OK);
    cr_assert_eq(loco_ref_model_run(&cfg, p, tokens, targets, TB, TT, &loss_u, NULL, g_u, &u, NULL),
                 LOCO_OK);
    cr_assert_eq(loss_t, loss_u, "untied copies change the forward: %.17g vs %.17g", loss_t,
                 loss_u);
    /* expected shared gradient: producer's own + its readers' copies */
    for (int l = 1; l < 4; l += 2) {
        char name[64];
        snprintf(name, sizeof name, "h.%d.attn.k.weight", cfg.kv_src[l]);
        size_t w = t->tensors[loco_tensor_table_find(t, name)].offset;
        snprintf(name, sizeof name, "h.%d.attn.k.bias", cfg.kv_src[l]);
        size_t b = t->tensors[loco_tensor_table_find(t, name)].offset;
        for (size_t j = 0; j < 2 * KV * C; j++) {
            g_u[w + j] += u.dkvw[l][j];
        }
        for (size_t j = 0; j < 2 * KV; j++) {
            g_u[b + j] += u.dkvb[l][j];
        }
        cr_assert(fabs(u.dkvw[l][0]) + fabs(u.dkvw[l][KV * C]) > 0.0, "copy got no gradient");
    }
    for (int i = 0; i < t->count; i++) {
        const loco_tensor *ti = &t->tensors[i];
        for (size_t j = 0; j < ti->numel; j++) {
            double a = g_t[ti->offset + j], b = g_u[ti->offset + j];
            cr_assert(fabs(a - b) <= 1e-12 + 1e-10 * fabs(b), "%s[%zu]: shared %.15g, sum %.15g",
                      ti->name, j, a, b);
        }
    }
    /* and the fp32 model's shared gradient matches the untied sum too */
    float loss;
    loco_model_zero_grad(m);
    cr_assert_eq(loco_model_forward(m, tokens, targets, TB, TT, &loss, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
    double floor = 1e-3 * max_abs_f(loco_model_grads(m), n);
    for (int i = 0; i < t->count; i++) {
        const loco_tensor *ti = &t->tensors[i];
        size_t worst;
        double e = norm_err_fd(loco_model_grads(m) + ti->offset, g_u + ti->offset, ti->numel, floor,
                               &worst);
        cr_assert(e <= 1e-4, "fp32 %s: %.3g", ti->name, e);
    }
    for (int l = 1; l < 4; l += 2) {
        free(copies[l]);
        free(u.dkvw[l]);
    }
    free(p);
    free(g_t);
    free(g_u);
    loco_model_free(m);
}

/* ---------------------------------------------------------------------------------------------
 * Cached decoding */

static void check_decode(const variant *v, size_t expect_cache)
{
    loco_model_config cfg;
    tiny_config(&cfg, v->layers, v->n_kv_head, v->share);
    loco_model *m = make_model(&cfg, 1, TT, 51);
    uint16_t tokens[TT];
    random_tokens(tokens, TT, cfg.vocab, 12);
    loco_error err = {0};
    cr_assert_eq(loco_model_forward(m, tokens, NULL, 1, TT, NULL, &err), LOCO_OK, "%s", err.msg);
    const float *full = loco_model_logits(m);
    loco_kv_cache *cache = NULL;
    cr_assert_eq(loco_kv_cache_init(&cache, m, TT, &err), LOCO_OK, "%s", err.msg);
    cr_assert_eq(loco_kv_cache_numel(cache), expect_cache, "%s: cache %zu floats, want %zu",
                 v->name, loco_kv_cache_numel(cache), expect_cache);
    cr_assert_eq(loco_model_kv_cache_numel(&cfg, TT), expect_cache);
    float logits[64];
    for (int pass = 0; pass < 2; pass++) { /* the second pass checks reset */
        for (int t = 0; t < TT; t++) {
            cr_assert_eq(loco_model_decode_step(m, cache, tokens[t], logits, &err), LOCO_OK, "%s",
                         err.msg);
            size_t worst;
            double e = norm_err_ff(logits, full + (size_t)t * 64, 64, 1e-6, &worst);
            cr_assert(e <= 1e-5, "%s: position %d: decode differs from forward by %.3g", v->name, t,
                      e);
        }
        cr_assert_eq(loco_kv_cache_len(cache), TT);
        loco_error_clear(&err);
        cr_assert_eq(loco_model_decode_step(m, cache, tokens[0], logits, &err), LOCO_ERR_RANGE);
        cr_assert(NULL != strstr(err.msg, "cache full"), "%s", err.msg);
        loco_kv_cache_reset(cache);
    }
    loco_kv_cache_free(cache);
    loco_model_free(m);
}

/* cache floats = producing layers x 2 (K, V) x n_kv_head x head size 16 x 16 tokens */
Test(model_decode, mha) { check_decode(&k_variants[0], 2 * 2 * 4 * 16 * 16); }
Test(model_decode, gqa) { check_decode(&k_variants[1], 2 * 2 * 2 * 16 * 16); }
Test(model_decode, mqa) { check_decode(&k_variants[2], 2 * 2 * 1 * 16 * 16); }
Test(model_decode, cross_layer) { check_decode(&k_variants[3], 1 * 2 * 4 * 16 * 16); }
Test(model_decode, gqa_cross_layer) { check_decode(&k_variants[4], 2 * 2 * 2 * 16 * 16); }

/* ---------------------------------------------------------------------------------------------
 * Determinism, accumulation, bad input */

Test(model_run, bit_identical_for_one_and_two_threads)
{
    loco_model_config cfg;
    tiny_config(&cfg, 4, 2, 2);
    omp_set_num_threads(2);
    loco_model *m = make_model(&cfg, TB, TT, 61);
    size_t n = loco_model_num_params(m);
    uint16_t tokens[TB * TT], targets[TB * TT];
    random_tokens(tokens, TB * TT, 64, 13);
    random_tokens(targets, TB * TT, 64, 14);
    float loss2, loss1;
    loco_model_zero_grad(m);
    cr_assert_eq(loco_model_forward(m, tokens, targets, TB, TT, &loss2, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
    float *g2 = malloc(n * sizeof(float));
    memcpy(g2, loco_model_grads(m), n * sizeof(float));
    omp_set_num_threads(1);
    loco_model_zero_grad(m);
    cr_assert_eq(loco_model_forward(m, tokens, targets, TB, TT, &loss1, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
    cr_assert_eq(loco_f32_bits(loss1), loco_f32_bits(loss2), "loss %.9g vs %.9g", loss1, loss2);
    cr_assert_arr_eq(g2, loco_model_grads(m), n * sizeof(float), "gradients differ");
    free(g2);
    loco_model_free(m);
}

Test(model_run, backward_accumulates_and_smaller_batches_work)
{
    loco_model_config cfg;
    tiny_config(&cfg, 2, 4, 1);
    loco_model *m = make_model(&cfg, TB, TT, 71);
    size_t n = loco_model_num_params(m);
    uint16_t tokens[TB * TT], targets[TB * TT];
    random_tokens(tokens, TB * TT, 64, 15);
    random_tokens(targets, TB * TT, 64, 16);
    loco_model_zero_grad(m);
    cr_assert_eq(loco_model_forward(m, tokens, targets, 1, 8, NULL, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
    float *once = malloc(n * sizeof(float));
    memcpy(once, loco_model_grads(m), n * sizeof(float));
    cr_assert_eq(loco_model_forward(m, tokens, targets, 1, 8, NULL, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
    double scale = max_abs_f(once, n);
    for (size_t i = 0; i < n; i++) {
        float want = 2.0f * once[i];
        cr_assert(fabsf(loco_model_grads(m)[i] - want) <= 1e-6 * (fabsf(want) + scale),
                  "element %zu: %g, want %g", i, loco_model_grads(m)[i], want);
    }
    free(once);
    loco_model_free(m);
}

Test(model_run, bad_input_is_an_error_not_a_crash)
{
    loco_model_config cfg;
    tiny_config(&cfg, 2, 4, 1);
    loco_model *m = make_model(&cfg, TB, TT, 81);
    uint16_t tokens[3 * 32] = {0}, targets[3 * 32] = {0};
    loco_error err = {0};
    cr_assert_eq(loco_model_forward(m, tokens, targets, 1, 17, NULL, &err), LOCO_ERR_RANGE);
    cr_assert(NULL != strstr(err.msg, "context"), "%s", err.msg);
    cr_assert_eq(loco_model_forward(m, tokens, targets, 3, 16, NULL, NULL), LOCO_ERR_RANGE);
    tokens[5] = 64;
    loco_error_clear(&err);
    cr_assert_eq(loco_model_forward(m, tokens, targets, 1, 16, NULL, &err), LOCO_ERR_RANGE);
    cr_assert(NULL != strstr(err.msg, "tokens[0][5]"), "%s", err.msg);
    tokens[5] = 0;
    targets[20] = 999;
    loco_error_clear(&err);
    cr_assert_eq(loco_model_forward(m, tokens, targets, 2, 16, NULL, &err), LOCO_ERR_RANGE);
    cr_assert(NULL != strstr(err.msg, "targets[1][4]"), "%s", err.msg);
    cr_assert_eq(loco_model_forward(m, tokens, NULL, 2, 16, NULL, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_ERR_INVALID_ARG, "backward without targets");
    targets[20] = 1;
    cr_assert_eq(loco_model_forward(m, tokens, targets, 2, 16, NULL, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
    cr_assert_eq(loco_model_backward(m, NULL), LOCO_ERR_INVALID_ARG, "second backward");
    loco_model *none = NULL;
    cr_assert_eq(loco_model_init(&none, &cfg, 1, 17, NULL), LOCO_ERR_RANGE);
    cr_assert_null(none);
    loco_kv_cache *cache = NULL;
    cr_assert_eq(loco_kv_cache_init(&cache, m, 17, NULL), LOCO_ERR_RANGE);
    cr_assert_eq(loco_kv_cache_init(&cache, m, 4, NULL), LOCO_OK);
    float logits[64];
    cr_assert_eq(loco_model_decode_step(m, cache, 64, logits, NULL), LOCO_ERR_RANGE);
    loco_kv_cache_free(cache);
    loco_model_free(m);
}
