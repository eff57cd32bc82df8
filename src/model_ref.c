/* src/model_ref.c — the double-precision reference model (see model_ref.h).
 *
 * Plain loops, one function per layer and direction, every backward +=. Read top to bottom:
 * layers, then loco_ref_model_run, which mirrors model.c's forward and backward.
 */
#include "model_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Layers */

void loco_ref_encoder_forward(double *out, const uint16_t *tokens, const double *wte,
                              const double *wpe, int B, int T, int C)
{
    for (int n = 0; n < B * T; n++) {
        for (int c = 0; c < C; c++) {
            out[(size_t)n * C + c] = wte[(size_t)tokens[n] * C + c] + wpe[(size_t)(n % T) * C + c];
        }
    }
}

void loco_ref_encoder_backward(double *dwte, double *dwpe, const double *dout,
                               const uint16_t *tokens, int B, int T, int C)
{
    for (int n = 0; n < B * T; n++) {
        for (int c = 0; c < C; c++) {
            dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
            dwpe[(size_t)(n % T) * C + c] += dout[(size_t)n * C + c];
        }
    }
}

void loco_ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp,
                                const double *weight, const double *bias, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C;
        double m = 0.0, var = 0.0;
        for (int c = 0; c < C; c++) {
            m += x[c];
        }
        m /= C;
        for (int c = 0; c < C; c++) {
            var += (x[c] - m) * (x[c] - m);
        }
        double s = 1.0 / sqrt(var / C + 1e-5);
        for (int c = 0; c < C; c++) {
            out[(size_t)n * C + c] = (x[c] - m) * s * weight[c] + bias[c];
        }
        mean[n] = m;
        rstd[n] = s;
    }
}

void loco_ref_layernorm_backward(double *dinp, double *dweight, double *dbias, const double *dout,
                                 const double *inp, const double *weight, const double *mean,
                                 const double *rstd, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const double *x = inp + (size_t)n * C;
        const double *dy = dout + (size_t)n * C;
        double dnorm_mean = 0.0, dnorm_norm_mean = 0.0;
        for (int c = 0; c < C; c++) {
            double norm = (x[c] - mean[n]) * rstd[n];
            dnorm_mean += dy[c] * weight[c];
            dnorm_norm_mean += dy[c] * weight[c] * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int c = 0; c < C; c++) {
            double norm = (x[c] - mean[n]) * rstd[n];
            dinp[(size_t)n * C + c] +=
                (dy[c] * weight[c] - dnorm_mean - norm * dnorm_norm_mean) * rstd[n];
            dweight[c] += dy[c] * norm;
            dbias[c] += dy[c];
        }
    }
}

void loco_ref_matmul_forward(double *out, const double *inp, const double *weight,
                             const double *bias, int N, int C, int OC)
{
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double sum = NULL != bias ? bias[o] : 0.0;
            for (int c = 0; c < C; c++) {
                sum += inp[(size_t)n * C + c] * weight[(size_t)o * C + c];
            }
            out[(size_t)n * OC + o] = sum;
        }
    }
}

void loco_ref_matmul_backward(double *dinp, double *dweight, double *dbias, const double *dout,
                              const double *inp, const double *weight, int N, int C, int OC)
{
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            double d = dout[(size_t)n * OC + o];
            for (int c = 0; c < C; c++) {
                dinp[(size_t)n * C + c] += d * weight[(size_t)o * C + c];
                dweight[(size_t)o * C + c] += d * inp[(size_t)n * C + c];
            }
            if (NULL != dbias) {
                dbias[o] += d;
            }
        }
    }
}

void loco_ref_attention_forward(double *out, double *att, const double *q, int q_stride,
                                const double *k, const double *v, int kv_stride, int B, int T,
                                int NH, int NKV, int hs)
{
    int C = NH * hs;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int g = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                const double *qt = q + (size_t)(b * T + t) * q_stride + h * hs;
                double *row = att + (((size_t)b * NH + h) * T + t) * T;
                double maxv = -INFINITY, sum = 0.0;
                for (int t2 = 0; t2 < T; t2++) {
                    row[t2] = 0.0;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    const double *kt = k + (size_t)(b * T + t2) * kv_stride + g * hs;
                    double s = 0.0;
                    for (int i = 0; i < hs; i++) {
                        s += qt[i] * kt[i];
                    }
                    row[t2] = s * scale;
                    maxv = row[t2] > maxv ? row[t2] : maxv;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    row[t2] = exp(row[t2] - maxv);
                    sum += row[t2];
                }
                double *o = out + (size_t)(b * T + t) * C + h * hs;
                for (int i = 0; i < hs; i++) {
                    o[i] = 0.0;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    row[t2] /= sum;
                    const double *vt = v + (size_t)(b * T + t2) * kv_stride + g * hs;
                    for (int i = 0; i < hs; i++) {
                        o[i] += row[t2] * vt[i];
                    }
                }
            }
        }
    }
}

void loco_ref_attention_backward(double *dq, int dq_stride, double *dk, double *dv,
                                 const double *dout, const double *att, const double *q,
                                 int q_stride, const double *k, const double *v, int kv_stride,
                                 int B, int T, int NH, int NKV, int hs)
{
    int C = NH * hs;
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int g = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                const double *p = att + (((size_t)b * NH + h) * T + t) * T;
                const double *dot = dout + (size_t)(b * T + t) * C + h * hs;
                const double *qt = q + (size_t)(b * T + t) * q_stride + h * hs;
                double *dqt = dq + (size_t)(b * T + t) * dq_stride + h * hs;
                double dsum = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const double *vt = v + (size_t)(b * T + t2) * kv_stride + g * hs;
                    double datt = 0.0;
                    for (int i = 0; i < hs; i++) {
                        datt += dot[i] * vt[i];
                    }
                    dsum += p[t2] * datt;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    size_t kv_row = (size_t)(b * T + t2) * kv_stride + g * hs;
                    double datt = 0.0;
                    for (int i = 0; i < hs; i++) {
                        datt += dot[i] * v[kv_row + i];
                    }
                    double dpre = p[t2] * (datt - dsum) * scale;
                    for (int i = 0; i < hs; i++) {
                        dqt[i] += dpre * k[kv_row + i];
                        dk[kv_row + i] += dpre * qt[i];
                        dv[kv_row + i] += p[t2] * dot[i];
                    }
                }
            }
        }
    }
}

#define REF_GELU_K0 0.7978845608028654 /* sqrt(2/pi) */
#define REF_GELU_K1 0.044715

void loco_ref_gelu_forward(double *out, const double *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = 0.5 * x * (1.0 + tanh(REF_GELU_K0 * (x + REF_GELU_K1 * x * x * x)));
    }
}

void loco_ref_gelu_backward(double *dinp, const double *inp, const double *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double t = tanh(REF_GELU_K0 * (x + REF_GELU_K1 * x * x * x));
        double du = REF_GELU_K0 * (1.0 + 3.0 * REF_GELU_K1 * x * x);
        dinp[i] += (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du) * dout[i];
    }
}

static double ref_logsumexp(const double *x, int V)
{
    double maxv = x[0], sum = 0.0;
    for (int v = 1; v < V; v++) {
        maxv = x[v] > maxv ? x[v] : maxv;
    }
    for (int v = 0; v < V; v++) {
        sum += exp(x[v] - maxv);
    }
    return maxv + log(sum);
}

double loco_ref_crossentropy_forward(double *losses, const double *logits, const uint16_t *targets,
                                     int N, int V)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const double *x = logits + (size_t)n * V;
        losses[n] = ref_logsumexp(x, V) - x[targets[n]];
        total += losses[n];
    }
    return total / N;
}

void loco_ref_crossentropy_backward(double *dlogits, const double *logits, const uint16_t *targets,
                                    double dloss, int N, int V)
{
    for (int n = 0; n < N; n++) {
        const double *x = logits + (size_t)n * V;
        double lse = ref_logsumexp(x, V);
        for (int v = 0; v < V; v++) {
            double p = exp(x[v] - lse);
            dlogits[(size_t)n * V + v] += (p - (v == targets[n] ? 1.0 : 0.0)) * dloss;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * The whole model */

/* Zeroed scratch arrays, all freed together. */
typedef struct ref_arena {
    double *blocks[2048];
    int count;
    bool failed;
} ref_arena;

static double *arena_alloc(ref_arena *arena, size_t n)
{
    if (arena->failed || arena->count == (int)(sizeof arena->blocks / sizeof arena->blocks[0])) {
        arena->failed = true;
        return NULL;
    }
    double *p = calloc(n > 0 ? n : 1, sizeof(double));
    arena->failed = NULL == p;
    arena->blocks[arena->count] = p;
    arena->count += NULL != p;
    return p;
}

static void arena_free(ref_arena *arena)
{
    for (int i = 0; i < arena->count; i++) {
        free(arena->blocks[i]);
    }
    arena->count = 0;
}

/* Activations of one block. */
typedef struct ref_layer {
    double *ln1, *mean1, *rstd1; /* (N, C), (N), (N) */
    double *q;                   /* (N, C) */
    double *k, *v;               /* (N, KV), only for layers with their own K/V */
    double *att;                 /* (B, NH, T, T) */
    double *atty, *res2;         /* (N, C) */
    double *ln2, *mean2, *rstd2;
    double *fch, *fchg; /* (N, 4C) */
    double *res3;       /* (N, C) */
} ref_layer;

static double *param_at(const loco_tensor_table *table, const double *base, int layer,
                        const char *suffix)
{
    char name[LOCO_TENSOR_NAME_MAX];
    if (layer >= 0) {
        snprintf(name, sizeof name, "h.%d.%s", layer, suffix);
    } else {
        snprintf(name, sizeof name, "%s", suffix);
    }
    int i = loco_tensor_table_find(table, name);
    LOCO_ASSERT(i >= 0);
    return (double *)base + table->tensors[i].offset;
}

loco_status loco_ref_model_run(const loco_model_config *cfg, const double *params,
                               const uint16_t *tokens, const uint16_t *targets, int B, int T,
                               double *loss, double *logits, double *grads,
                               const loco_ref_untied *untied, loco_error *err)
{
    loco_tensor_table table;
    LOCO_TRY(loco_model_build_table(cfg, &table, err));
    int N = B * T, C = cfg->n_embd, V = cfg->vocab, L = cfg->n_layer, NH = cfg->n_head;
    int NKV = cfg->n_kv_head, hs = C / NH, KV = NKV * hs;
    ref_arena arena = {.count = 0};
    ref_layer act[LOCO_MAX_LAYERS];
    memset(act, 0, sizeof act);
#define W(layer, suffix) param_at(&table, params, layer, suffix)
#define G(layer, suffix) param_at(&table, grads, layer, suffix)
    /* kv_of[l]: the layer whose k/v arrays layer l attends with. */
    int kv_of[LOCO_MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        bool own = cfg->kv_src[l] == l || (NULL != untied && NULL != untied->kvw[l]);
        kv_of[l] = own ? l : cfg->kv_src[l];
    }

    /* ---- forward ---- */
    double *encoded = arena_alloc(&arena, (size_t)N * C);
    for (int l = 0; l < L; l++) {
        ref_layer *a = &act[l];
        a->ln1 = arena_alloc(&arena, (size_t)N * C);
        a->mean1 = arena_alloc(&arena, N);
        a->rstd1 = arena_alloc(&arena, N);
        a->q = arena_alloc(&arena, (size_t)N * C);
        if (kv_of[l] == l) {
            a->k = arena_alloc(&arena, (size_t)N * KV);
            a->v = arena_alloc(&arena, (size_t)N * KV);
        }
        a->att = arena_alloc(&arena, (size_t)B * NH * T * T);
        a->atty = arena_alloc(&arena, (size_t)N * C);
        a->res2 = arena_alloc(&arena, (size_t)N * C);
        a->ln2 = arena_alloc(&arena, (size_t)N * C);
        a->mean2 = arena_alloc(&arena, N);
        a->rstd2 = arena_alloc(&arena, N);
        a->fch = arena_alloc(&arena, (size_t)N * 4 * C);
        a->fchg = arena_alloc(&arena, (size_t)N * 4 * C);
        a->res3 = arena_alloc(&arena, (size_t)N * C);
    }
    double *lnf = arena_alloc(&arena, (size_t)N * C);
    double *meanf = arena_alloc(&arena, N), *rstdf = arena_alloc(&arena, N);
    double *lg = arena_alloc(&arena, (size_t)N * V);
    double *losses = arena_alloc(&arena, N);
    if (arena.failed) {
        arena_free(&arena);
        loco_tensor_table_free(&table);
        return loco_error_set(err, LOCO_ERR_NOMEM, "reference model: out of memory");
    }

    loco_ref_encoder_forward(encoded, tokens, W(-1, "wte"), W(-1, "wpe"), B, T, C);
    const double *residual = encoded;
    for (int l = 0; l < L; l++) {
        ref_layer *a = &act[l];
        int src = cfg->kv_src[l];
        loco_ref_layernorm_forward(a->ln1, a->mean1, a->rstd1, residual, W(l, "ln_1.weight"),
                                   W(l, "ln_1.bias"), N, C);
        loco_ref_matmul_forward(a->q, a->ln1, W(l, "attn.q.weight"), W(l, "attn.q.bias"), N, C, C);
        if (src == l) {
            loco_ref_matmul_forward(a->k, a->ln1, W(l, "attn.k.weight"), W(l, "attn.k.bias"), N, C,
                                    KV);
            loco_ref_matmul_forward(a->v, a->ln1, W(l, "attn.v.weight"), W(l, "attn.v.bias"), N, C,
                                    KV);
        } else if (kv_of[l] == l) { /* untied copy applied to the producer's ln_1 output */
            loco_ref_matmul_forward(a->k, act[src].ln1, untied->kvw[l], untied->kvb[l], N, C, KV);
            loco_ref_matmul_forward(a->v, act[src].ln1, untied->kvw[l] + (size_t)KV * C,
                                    untied->kvb[l] + KV, N, C, KV);
        }
        const ref_layer *kv = &act[kv_of[l]];
        loco_ref_attention_forward(a->atty, a->att, a->q, C, kv->k, kv->v, KV, B, T, NH, NKV, hs);
        loco_ref_matmul_forward(a->res2, a->atty, W(l, "attn.c_proj.weight"),
                                W(l, "attn.c_proj.bias"), N, C, C);
        for (size_t i = 0; i < (size_t)N * C; i++) {
            a->res2[i] += residual[i];
        }
        loco_ref_layernorm_forward(a->ln2, a->mean2, a->rstd2, a->res2, W(l, "ln_2.weight"),
                                   W(l, "ln_2.bias"), N, C);
        loco_ref_matmul_forward(a->fch, a->ln2, W(l, "mlp.c_fc.weight"), W(l, "mlp.c_fc.bias"), N,
                                C, 4 * C);
        loco_ref_gelu_forward(a->fchg, a->fch, (size_t)N * 4 * C);
        loco_ref_matmul_forward(a->res3, a->fchg, W(l, "mlp.c_proj.weight"),
                                W(l, "mlp.c_proj.bias"), N, 4 * C, C);
        for (size_t i = 0; i < (size_t)N * C; i++) {
            a->res3[i] += a->res2[i];
        }
        residual = a->res3;
    }
    loco_ref_layernorm_forward(lnf, meanf, rstdf, residual, W(-1, "ln_f.weight"),
                               W(-1, "ln_f.bias"), N, C);
    loco_ref_matmul_forward(lg, lnf, W(-1, "wte"), NULL, N, C, V);
    *loss = loco_ref_crossentropy_forward(losses, lg, targets, N, V);
    if (NULL != logits) {
        memcpy(logits, lg, (size_t)N * V * sizeof(double));
    }

    /* ---- backward ---- */
    if (NULL != grads) {
        double *dlogits = arena_alloc(&arena, (size_t)N * V);
        double *dres = arena_alloc(&arena, (size_t)N * C);
        double *dlnf = arena_alloc(&arena, (size_t)N * C);
        double *dln1[LOCO_MAX_LAYERS], *dk[LOCO_MAX_LAYERS] = {0}, *dv[LOCO_MAX_LAYERS] = {0};
        for (int l = 0; l < L; l++) {
            dln1[l] = arena_alloc(&arena, (size_t)N * C);
            if (kv_of[l] == l) {
                dk[l] = arena_alloc(&arena, (size_t)N * KV);
                dv[l] = arena_alloc(&arena, (size_t)N * KV);
            }
        }
        double *dfchg = arena_alloc(&arena, (size_t)N * 4 * C);
        double *dfch = arena_alloc(&arena, (size_t)N * 4 * C);
        double *dln2 = arena_alloc(&arena, (size_t)N * C);
        double *datty = arena_alloc(&arena, (size_t)N * C);
        double *dq = arena_alloc(&arena, (size_t)N * C);
        if (arena.failed) {
            arena_free(&arena);
            loco_tensor_table_free(&table);
            return loco_error_set(err, LOCO_ERR_NOMEM, "reference model: out of memory");
        }
        loco_ref_crossentropy_backward(dlogits, lg, targets, 1.0 / N, N, V);
        loco_ref_matmul_backward(dlnf, G(-1, "wte"), NULL, dlogits, lnf, W(-1, "wte"), N, C, V);
        loco_ref_layernorm_backward(dres, G(-1, "ln_f.weight"), G(-1, "ln_f.bias"), dlnf,
                                    act[L - 1].res3, W(-1, "ln_f.weight"), meanf, rstdf, N, C);
        for (int l = L - 1; l >= 0; l--) {
            const ref_layer *a = &act[l];
            const double *res_in = l > 0 ? act[l - 1].res3 : encoded;
            int src = cfg->kv_src[l], kl = kv_of[l];
            memset(dfchg, 0, (size_t)N * 4 * C * sizeof(double));
            memset(dfch, 0, (size_t)N * 4 * C * sizeof(double));
            memset(dln2, 0, (size_t)N * C * sizeof(double));
            memset(datty, 0, (size_t)N * C * sizeof(double));
            memset(dq, 0, (size_t)N * C * sizeof(double));
            loco_ref_matmul_backward(dfchg, G(l, "mlp.c_proj.weight"), G(l, "mlp.c_proj.bias"),
                                     dres, a->fchg, W(l, "mlp.c_proj.weight"), N, 4 * C, C);
            loco_ref_gelu_backward(dfch, a->fch, dfchg, (size_t)N * 4 * C);
            loco_ref_matmul_backward(dln2, G(l, "mlp.c_fc.weight"), G(l, "mlp.c_fc.bias"), dfch,
                                     a->ln2, W(l, "mlp.c_fc.weight"), N, C, 4 * C);
            loco_ref_layernorm_backward(dres, G(l, "ln_2.weight"), G(l, "ln_2.bias"), dln2, a->res2,
                                        W(l, "ln_2.weight"), a->mean2, a->rstd2, N, C);
            loco_ref_matmul_backward(datty, G(l, "attn.c_proj.weight"), G(l, "attn.c_proj.bias"),
                                     dres, a->atty, W(l, "attn.c_proj.weight"), N, C, C);
            loco_ref_attention_backward(dq, C, dk[kl], dv[kl], datty, a->att, a->q, C, act[kl].k,
                                        act[kl].v, KV, B, T, NH, NKV, hs);
            loco_ref_matmul_backward(dln1[l], G(l, "attn.q.weight"), G(l, "attn.q.bias"), dq,
                                     a->ln1, W(l, "attn.q.weight"), N, C, C);
            if (src == l) { /* every reader above has added its dK/dV by now */
                loco_ref_matmul_backward(dln1[l], G(l, "attn.k.weight"), G(l, "attn.k.bias"), dk[l],
                                         a->ln1, W(l, "attn.k.weight"), N, C, KV);
                loco_ref_matmul_backward(dln1[l], G(l, "attn.v.weight"), G(l, "attn.v.bias"), dv[l],
                                         a->ln1, W(l, "attn.v.weight"), N, C, KV);
            } else if (kl == l) { /* untied copy: gradient to the copy and the producer's ln_1 */
                loco_ref_matmul_backward(dln1[src], untied->dkvw[l], untied->dkvb[l], dk[l],
                                         act[src].ln1, untied->kvw[l], N, C, KV);
                loco_ref_matmul_backward(dln1[src], untied->dkvw[l] + (size_t)KV * C,
                                         untied->dkvb[l] + KV, dv[l], act[src].ln1,
                                         untied->kvw[l] + (size_t)KV * C, N, C, KV);
            }
            loco_ref_layernorm_backward(dres, G(l, "ln_1.weight"), G(l, "ln_1.bias"), dln1[l],
                                        res_in, W(l, "ln_1.weight"), a->mean1, a->rstd1, N, C);
        }
        loco_ref_encoder_backward(G(-1, "wte"), G(-1, "wpe"), dres, tokens, B, T, C);
    }
#undef W
#undef G
    arena_free(&arena);
    loco_tensor_table_free(&table);
    return LOCO_OK;
}
