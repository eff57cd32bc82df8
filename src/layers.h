/* src/layers.h — the model's layers on the CPU, one function per layer and direction
 * (private to src/ and tests; the CUDA path mirrors these names with a _cuda suffix).
 *
 * Conventions (llm.c): arguments are outputs, inputs, weights, then dimensions; N = B*T rows;
 * weights are (OC, C) row-major like torch.nn.Linear. Backward functions ADD (+=) into parameter
 * gradients, so gradients accumulate over micro-batches for free, but OVERWRITE (=) the
 * gradient of their input activation unless the comment says otherwise. Every function here is
 * thread-count independent: the same inputs give bit-identical outputs with 1 or 16 threads
 * (reductions run in a fixed order; parallel loops split only independent outputs).
 *
 * The double-precision references these are tested against live in src/model_ref.h.
 */
#ifndef LOCO_SRC_LAYERS_H
#define LOCO_SRC_LAYERS_H

#include "src/gemm.h"

#include <stdint.h>

/* out (N, C) = wte[tokens[n]] + wpe[n % T]. tokens (N) are already range-checked. */
void loco_encoder_forward(float *out, const uint16_t *tokens, const float *wte, const float *wpe,
                          int B, int T, int C);
/* dwte (V, C) += scatter of dout rows by token; dwpe (T, C) += sum over the batch. */
void loco_encoder_backward(float *dwte, float *dwpe, const float *dout, const uint16_t *tokens,
                           int B, int T, int C);

/* out (N, C) = (inp - mean) * rstd * weight + bias, per row; saves mean (N) and rstd (N). */
void loco_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C);
/* dinp (N, C) += (accumulates: the residual stream), dweight (C) +=, dbias (C) +=. */
void loco_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C);

/* out (N, OC) = inp (N, C) · weight (OC, C)^T + bias (OC, may be NULL) + residual (N, OC, may
 * be NULL; may not alias out). */
void loco_matmul_forward(const loco_gemm_workspace *ws, float *out, const float *inp,
                         const float *weight, const float *bias, const float *residual, int N,
                         int C, int OC);
/* dinp (N, C) = dout · weight (dinp may be NULL to skip), dweight (OC, C) += dout^T · inp,
 * dbias (OC) += column sums of dout (may be NULL). */
void loco_matmul_backward(const loco_gemm_workspace *ws, float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight, int N, int C,
                          int OC);

/* The MLP's two GELU-adjacent matmuls with the GELU fused in (applied to each output tile while
 * it is in L1, no separate pass): forward out (N, OC) = inp · weight^T + bias and act = gelu(out);
 * backward of a layer whose input inp = gelu(gelu_in): dinp (N, C) = (dout · weight) *
 * gelu'(gelu_in), dweight (OC, C) +=, dbias (OC) += as loco_matmul_backward. */
void loco_matmul_gelu_forward(const loco_gemm_workspace *ws, float *out, float *act,
                              const float *inp, const float *weight, const float *bias, int N,
                              int C, int OC);
void loco_matmul_backward_gelu(const loco_gemm_workspace *ws, float *dinp, float *dweight,
                               float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *gelu_in, int N, int C, int OC);

/* Causal multi-head attention with grouped K/V heads. Query head h of NH reads K/V head
 * h / (NH / NKV). q rows have stride q_stride (query head h at columns h*hs), k and v rows have
 * stride kv_stride (K/V head g at columns g*hs). out (N, NH*hs); att (B, NH, T, T) saves the
 * softmax probabilities (zero above the diagonal). scratch: per-thread slices of
 * loco_attention_scratch_floats(T, hs) floats, for up to ws->threads threads. */
size_t loco_attention_scratch_floats(int T, int hs);
void loco_attention_forward(const loco_gemm_workspace *ws, float *scratch, float *out, float *att,
                            const float *q, int q_stride, const float *k, const float *v,
                            int kv_stride, int B, int T, int NH, int NKV, int hs);
/* dq (rows of stride dq_stride) = ; dk, dv (rows of stride kv_stride) += (several query heads
 * and several layers may read one K/V head: their gradients add up), or = when zero_dkv is
 * true (the first reader in the backward pass starts the sum; only the K/V head columns of dk
 * and dv are touched). */
void loco_attention_backward(const loco_gemm_workspace *ws, float *scratch, float *dq,
                             int dq_stride, float *dk, float *dv, bool zero_dkv, const float *dout,
                             const float *att, const float *q, int q_stride, const float *k,
                             const float *v, int kv_stride, int B, int T, int NH, int NKV, int hs);

/* GELU, tanh approximation (GPT-2, torch approximate="tanh"). n elements. */
void loco_gelu_forward(float *out, const float *inp, size_t n);
/* dinp = dout * gelu'(inp); dinp may alias dout. */
void loco_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* Per row n: lse[n] = logsumexp(logits[n]), losses[n] = lse[n] - logits[n][targets[n]].
 * Returns the mean loss (a double sum in row order). logits (N, V). */
double loco_crossentropy_forward(float *losses, float *lse, const float *logits,
                                 const uint16_t *targets, int N, int V);
/* In place: logits (N, V) become dloss/dlogits = (softmax - onehot(target)) * dloss. */
void loco_crossentropy_backward(float *logits, const float *lse, const uint16_t *targets,
                                float dloss, int N, int V);

/* Vectorised exp for x <= 88 (Cephes polynomial, ~2 ulp); values below -87 flush to 0.
 * n elements, out may alias inp. Exposed for its test against expf. */
void loco_vexp(float *out, const float *inp, size_t n);

#endif /* LOCO_SRC_LAYERS_H */
