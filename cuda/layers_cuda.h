/* cuda/layers_cuda.h — the model's layers on the GPU (CUDA builds only; tests and cuda/ use it).
 *
 * Every function mirrors its CPU twin in src/layers.h: the same name with a _cuda suffix, the
 * same argument order (outputs, inputs, weights, dimensions) and the stream last. All pointers
 * are device pointers. Differences from the CPU versions, all for speed:
 *   - activations and weights are bf16 (loco_bf16: the raw 16 bits), statistics and parameter
 *     gradients fp32; every product accumulates in fp32;
 *   - launchers return loco_status (LOCO_ERR_CUDA after logging the CUDA error with file:line);
 *   - attention keeps the softmax's log-sum-exp per row instead of the (T, T) probabilities
 *     (flash attention: nothing of size T x T is ever stored) and its backward needs the
 *     forward's output;
 *   - reductions over rows (parameter gradients) write partial sums to a caller's scratch and
 *     add them up in a fixed order: bit-identical results on every run;
 *   - the classifier fuses softmax, loss and the loss gradient into one pass.
 * Backward functions ADD (+=) into parameter gradients and overwrite input gradients unless the
 * comment says otherwise, as on the CPU.
 *
 * Requirements: C, OC and the head size multiples of 8 (16-byte vectors); N = B*T rows.
 */
#ifndef LOCO_CUDA_LAYERS_CUDA_H
#define LOCO_CUDA_LAYERS_CUDA_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "base/base.h"

typedef uint16_t loco_bf16; /* a bf16 value's bits (base/half.h converts on the host) */

/* cuBLASLt state for the matmuls: handle and workspace (owned by a loco_cuda_ctx). */
typedef struct loco_cuda_blas {
    cublasLtHandle_t lt;
    void *workspace; /* device */
    size_t workspace_bytes;
} loco_cuda_blas;

/* ---------------------------------------------------------------------------------------------
 * Encoder */

/* out (N, C) = wte[tokens[n]] + wpe[n % T]; tokens (N) on the device, already range-checked. */
loco_status loco_encoder_forward_cuda(loco_bf16 *out, const uint16_t *tokens,
                                      const loco_bf16 *wte, const loco_bf16 *wpe, int B, int T,
                                      int C, cudaStream_t stream);

/* The order in which encoder backward visits rows: positions grouped by token, ascending inside
 * a group, so each used row of dwte is summed in a fixed order without atomics. Built on the
 * host from host tokens into `plan` (3 N + 1 ints: loco_encoder_plan_ints(N)):
 *   plan[0]                    = U, the number of distinct tokens
 *   plan[1 .. 1+U]             = start of each group in the position list (U + 1 entries)
 *   plan[2+U .. 2+2U)          = the group's token
 *   plan[2+2U .. 2+2U+N)       = positions, grouped
 * counts (vocab ints) is scratch. Returns U. */
size_t loco_encoder_plan_ints(int N);
int loco_encoder_plan_build(int *plan, int *counts, const uint16_t *tokens, int N, int vocab);

/* dwte (V, C) += rows of dout gathered by the plan (a device copy of the host plan);
 * dwpe (T, C) += sum over the batch. n_groups = U from the plan's builder. */
loco_status loco_encoder_backward_cuda(float *dwte, float *dwpe, const loco_bf16 *dout,
                                       const int *plan, int n_groups, int B, int T, int C,
                                       cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * LayerNorm (eps 1e-5, biased variance) */

loco_status loco_layernorm_forward_cuda(loco_bf16 *out, float *mean, float *rstd,
                                        const loco_bf16 *inp, const loco_bf16 *weight,
                                        const loco_bf16 *bias, int N, int C,
                                        cudaStream_t stream);

/* Floats of scratch the row reductions of backward functions need (LayerNorm, bias). */
size_t loco_colsum_scratch_floats(int N, int C);

/* dinp (N, C) += (accumulates: the residual stream), dweight (C) +=, dbias (C) +=. */
loco_status loco_layernorm_backward_cuda(loco_bf16 *dinp, float *dweight, float *dbias,
                                         float *scratch, const loco_bf16 *dout,
                                         const loco_bf16 *inp, const loco_bf16 *weight,
                                         const float *mean, const float *rstd, int N, int C,
                                         cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Matmul (nn.Linear) through cuBLASLt, bias and residual fused into its epilogue */

/* out (N, OC) = inp (N, C) · weight (OC, C)^T + bias (OC, may be NULL) + residual (N, OC, may
 * be NULL; may not alias out). */
loco_status loco_matmul_forward_cuda(const loco_cuda_blas *blas, loco_bf16 *out,
                                     const loco_bf16 *inp, const loco_bf16 *weight,
                                     const loco_bf16 *bias, const loco_bf16 *residual, int N,
                                     int C, int OC, cudaStream_t stream);

/* The MLP's first half in one call: pre (N, OC) = inp · weight^T + bias, out = gelu(pre). */
loco_status loco_matmul_gelu_forward_cuda(const loco_cuda_blas *blas, loco_bf16 *out,
                                          loco_bf16 *pre, const loco_bf16 *inp,
                                          const loco_bf16 *weight, const loco_bf16 *bias, int N,
                                          int C, int OC, cudaStream_t stream);

/* dinp (N, C) = dout · weight (dinp may be NULL), dweight (OC, C) += dout^T · inp (fp32),
 * dbias (OC) += column sums of dout (may be NULL; uses scratch of
 * loco_colsum_scratch_floats(N, OC) floats). */
loco_status loco_matmul_backward_cuda(const loco_cuda_blas *blas, loco_bf16 *dinp, float *dweight,
                                      float *dbias, float *scratch, const loco_bf16 *dout,
                                      const loco_bf16 *inp, const loco_bf16 *weight, int N,
                                      int C, int OC, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Causal attention with grouped K/V heads (query head h reads K/V head h / (NH / NKV)); q rows
 * of stride q_stride (head h at columns h*hs), k and v rows of stride kv_stride (head g at
 * g*hs); out (N, NH*hs); lse (B, NH, T) the natural log-sum-exp of each row's scaled scores.
 * Head sizes 64 and 128 run a tensor-core flash kernel; other sizes a plain one. */
loco_status loco_attention_forward_cuda(loco_bf16 *out, float *lse, const loco_bf16 *q,
                                        int q_stride, const loco_bf16 *k, const loco_bf16 *v,
                                        int kv_stride, int B, int T, int NH, int NKV, int hs,
                                        cudaStream_t stream);

/* Floats of scratch attention backward needs: B * NH * T. */
size_t loco_attention_scratch_floats_cuda(int B, int T, int NH);

/* dq (rows of stride dq_stride) = ; dk, dv (rows of stride kv_stride) += over every query head
 * of the group, or = when zero_dkv (the first reader of a shared K/V starts the sum). */
loco_status loco_attention_backward_cuda(float *scratch, loco_bf16 *dq, int dq_stride,
                                         loco_bf16 *dk, loco_bf16 *dv, bool zero_dkv,
                                         const loco_bf16 *dout, const loco_bf16 *out,
                                         const float *lse, const loco_bf16 *q, int q_stride,
                                         const loco_bf16 *k, const loco_bf16 *v, int kv_stride,
                                         int B, int T, int NH, int NKV, int hs,
                                         cudaStream_t stream);

/* The flash kernels' tile shapes at head size 64, for tuning and for testing every variant
 * (the functions above use the measured best): forward_mt and dq_mt = 16-row m-tiles per warp
 * (1 or 2: blocks of 64 or 128 query rows), dkv_blocks = blocks per multiprocessor the dK/dV
 * kernel is compiled for (2 or 3: fewer registers, more warps). Other head sizes ignore them. */
typedef struct loco_flash_tiles {
    int forward_mt, dq_mt, dkv_blocks;
} loco_flash_tiles;

loco_status loco_attention_forward_tiles_cuda(const loco_flash_tiles *tiles, loco_bf16 *out,
                                              float *lse, const loco_bf16 *q, int q_stride,
                                              const loco_bf16 *k, const loco_bf16 *v,
                                              int kv_stride, int B, int T, int NH, int NKV, int hs,
                                              cudaStream_t stream);
loco_status loco_attention_backward_tiles_cuda(
    const loco_flash_tiles *tiles, float *scratch, loco_bf16 *dq, int dq_stride, loco_bf16 *dk,
    loco_bf16 *dv, bool zero_dkv, const loco_bf16 *dout, const loco_bf16 *out, const float *lse,
    const loco_bf16 *q, int q_stride, const loco_bf16 *k, const loco_bf16 *v, int kv_stride, int B,
    int T, int NH, int NKV, int hs, cudaStream_t stream);

/* The plain kernels behind any head size, exposed so tests can check the flash kernels against
 * them on the device. Same contracts as above. */
loco_status loco_attention_forward_plain_cuda(loco_bf16 *out, float *lse, const loco_bf16 *q,
                                              int q_stride, const loco_bf16 *k,
                                              const loco_bf16 *v, int kv_stride, int B, int T,
                                              int NH, int NKV, int hs, cudaStream_t stream);
loco_status loco_attention_backward_plain_cuda(float *scratch, loco_bf16 *dq, int dq_stride,
                                               loco_bf16 *dk, loco_bf16 *dv, bool zero_dkv,
                                               const loco_bf16 *dout, const loco_bf16 *out,
                                               const float *lse, const loco_bf16 *q,
                                               int q_stride, const loco_bf16 *k,
                                               const loco_bf16 *v, int kv_stride, int B, int T,
                                               int NH, int NKV, int hs, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * GELU (tanh approximation) */

loco_status loco_gelu_forward_cuda(loco_bf16 *out, const loco_bf16 *inp, size_t n,
                                   cudaStream_t stream);
/* dinp = dout * gelu'(inp); dinp may alias dout. */
loco_status loco_gelu_backward_cuda(loco_bf16 *dinp, const loco_bf16 *inp, const loco_bf16 *dout,
                                    size_t n, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Softmax cross-entropy over the vocabulary, fused with its gradient */

/* Per row n of logits (N, V): losses[n] = logsumexp(row) - row[targets[n]]; lse (may be NULL)
 * receives the log-sum-exp. When dloss != 0 the row is then overwritten in place by
 * (softmax(row) - onehot(target)) * dloss, the input of the classifier's matmul backward. */
loco_status loco_crossentropy_forward_cuda(float *losses, float *lse, loco_bf16 *logits,
                                           const uint16_t *targets, float dloss, int N, int V,
                                           cudaStream_t stream);

/* out = sum of x (n floats) in double, in a fixed order; scratch: loco_sum_scratch_doubles(). */
size_t loco_sum_scratch_doubles(void);
loco_status loco_sum_cuda(double *out, double *scratch, const float *x, size_t n, bool squares,
                          cudaStream_t stream);

/* bf16 copy of fp32 values (n), round to nearest even. */
loco_status loco_bf16_from_f32_cuda(loco_bf16 *out, const float *inp, size_t n,
                                    cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* LOCO_CUDA_LAYERS_CUDA_H */
