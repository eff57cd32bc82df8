/* src/model_ref.h — the model in double precision with textbook loops: the oracle.
 *
 * Nothing here is fast or used in training. It is what the optimized fp32 layers (layers.h) and
 * the fp32 model (model.h) are tested against, and what finite differences are taken on (in
 * double, central differences agree with the analytic gradient to ~1e-9). It shares only the
 * parameter table (loco_model_build_table) with model.c: Q, K and V are separate products here,
 * attention is the per-query loop, and K/V sharing is done by reading the producer's K/V arrays,
 * so a layout or fusion bug in model.c cannot hide in a shared helper.
 *
 * Semantics differ from layers.h in one way: every backward here ADDS (+=) into every output,
 * input gradients included.
 */
#ifndef LOCO_SRC_MODEL_REF_H
#define LOCO_SRC_MODEL_REF_H

#include "src/model.h"

#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * Layers (same shapes as layers.h; N = B*T rows) */

void loco_ref_encoder_forward(double *out, const uint16_t *tokens, const double *wte,
                              const double *wpe, int B, int T, int C);
void loco_ref_encoder_backward(double *dwte, double *dwpe, const double *dout,
                               const uint16_t *tokens, int B, int T, int C);
void loco_ref_layernorm_forward(double *out, double *mean, double *rstd, const double *inp,
                                const double *weight, const double *bias, int N, int C);
void loco_ref_layernorm_backward(double *dinp, double *dweight, double *dbias, const double *dout,
                                 const double *inp, const double *weight, const double *mean,
                                 const double *rstd, int N, int C);
/* out (N, OC) = inp (N, C) · weight (OC, C)^T + bias (may be NULL) */
void loco_ref_matmul_forward(double *out, const double *inp, const double *weight,
                             const double *bias, int N, int C, int OC);
void loco_ref_matmul_backward(double *dinp, double *dweight, double *dbias, const double *dout,
                              const double *inp, const double *weight, int N, int C, int OC);
/* q rows of stride q_stride, k and v rows of stride kv_stride; out (N, NH*hs), att (B, NH, T, T) */
void loco_ref_attention_forward(double *out, double *att, const double *q, int q_stride,
                                const double *k, const double *v, int kv_stride, int B, int T,
                                int NH, int NKV, int hs);
void loco_ref_attention_backward(double *dq, int dq_stride, double *dk, double *dv,
                                 const double *dout, const double *att, const double *q,
                                 int q_stride, const double *k, const double *v, int kv_stride,
                                 int B, int T, int NH, int NKV, int hs);
void loco_ref_gelu_forward(double *out, const double *inp, size_t n);
void loco_ref_gelu_backward(double *dinp, const double *inp, const double *dout, size_t n);
/* losses (N); returns the mean. dlogits (N, V) += (softmax - onehot) * dloss. */
double loco_ref_crossentropy_forward(double *losses, const double *logits, const uint16_t *targets,
                                     int N, int V);
void loco_ref_crossentropy_backward(double *dlogits, const double *logits, const uint16_t *targets,
                                    double dloss, int N, int V);

/* ---------------------------------------------------------------------------------------------
 * The whole model */

/* Optional untied K/V copies, for testing cross-layer sharing: a consumer layer l with
 * kvw[l] != NULL computes its own K/V = (producer's ln_1 output) · kvw[l]^T + kvb[l] instead of
 * reading the producer's, and its K/V gradients go to dkvw[l], dkvb[l] (+=) instead of the
 * producer's. kvw[l] is (2 KV, C): K rows then V rows; kvb[l] is (2 KV). With kvw[l] equal to the
 * producer's weights the forward is unchanged. */
typedef struct loco_ref_untied {
    const double *kvw[LOCO_MAX_LAYERS];
    const double *kvb[LOCO_MAX_LAYERS];
    double *dkvw[LOCO_MAX_LAYERS];
    double *dkvb[LOCO_MAX_LAYERS];
} loco_ref_untied;

/* Forward of cfg's model with params (laid out by loco_model_build_table) on tokens (B, T):
 * *loss = mean cross-entropy against targets; logits (B, T, V) if non-NULL; with grads non-NULL
 * (same layout) the backward pass adds the gradient of *loss into it. untied may be NULL.
 * Allocates its own scratch; LOCO_ERR_NOMEM or a config error otherwise. */
loco_status loco_ref_model_run(const loco_model_config *cfg, const double *params,
                               const uint16_t *tokens, const uint16_t *targets, int B, int T,
                               double *loss, double *logits, double *grads,
                               const loco_ref_untied *untied, loco_error *err);

#endif /* LOCO_SRC_MODEL_REF_H */
