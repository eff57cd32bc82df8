/* cuda/cuda.h — loco's GPU path as the CPU code sees it: devices, device memory, the GPT model
 * on one GPU, and the optimizer updates on device buffers. No CUDA type appears here, so every
 * layer above includes this header in every build; in a build without CUDA (LOCO_HAVE_CUDA 0)
 * the same functions exist and fail with LOCO_ERR_UNSUPPORTED ("built without CUDA"), and
 * loco_cuda_device_count() returns 0.
 *
 * Read in this order: devices and contexts, device memory, the GPT model, optimizers.
 * The kernels behind them are declared in cuda/layers_cuda.h (CUDA types, CUDA builds only).
 *
 * Precision (the GPU model): parameters are fp32 master weights with a bf16 copy that the
 * layers read; activations are bf16; every matmul and attention product accumulates in fp32;
 * LayerNorm statistics, softmax statistics, losses and all gradients of parameters are fp32.
 * Reductions run in a fixed order (no floating-point atomics), so a step's results are the same
 * on every run on the same GPU model and shapes.
 */
#ifndef LOCO_CUDA_CUDA_H
#define LOCO_CUDA_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "base/base.h"

/* ---------------------------------------------------------------------------------------------
 * Devices and contexts */

/* True when loco was built with CUDA (LOCO_HAVE_CUDA 1). */
bool loco_cuda_built(void);

/* CUDA devices usable by this process: 0 in a CPU-only build, without a driver, or without a
 * device. Never fails. */
int loco_cuda_device_count(void);

/* A context: one device, one compute stream, a cuBLASLt handle with its workspace and a small
 * reduction scratch. Everything that takes a context runs in order on its stream. */
typedef struct loco_cuda_ctx loco_cuda_ctx;

/* Open device `device` (0-based). Errors: no such device, driver failure (LOCO_ERR_CUDA), or a
 * CPU-only build (LOCO_ERR_UNSUPPORTED); *ctx is NULL then. */
loco_status loco_cuda_ctx_init(loco_cuda_ctx **ctx, int device, loco_error *err);
void loco_cuda_ctx_free(loco_cuda_ctx *ctx); /* NULL is fine */

/* The device's name ("NVIDIA H100 80GB HBM3") and multiprocessor count. */
const char *loco_cuda_ctx_device_name(const loco_cuda_ctx *ctx);
int loco_cuda_ctx_sm_count(const loco_cuda_ctx *ctx);

/* Make the context's device the calling thread's current one (a thread that drives a second
 * GPU of a worker calls this first: allocations and launches go to the current device). */
loco_status loco_cuda_bind(loco_cuda_ctx *ctx, loco_error *err);

/* Wait for everything queued on the context's stream; LOCO_ERR_CUDA if any of it failed. */
loco_status loco_cuda_sync(loco_cuda_ctx *ctx, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Device memory (plain cudaMalloc; zero-filled) and copies on the context's stream. Copies
 * return when the data has arrived (they synchronize the stream). */

loco_status loco_cuda_alloc(void **dev, size_t bytes, loco_error *err);
void loco_cuda_free(void *dev); /* NULL is fine */
loco_status loco_cuda_upload(loco_cuda_ctx *ctx, void *dev, const void *host, size_t bytes,
                             loco_error *err);
loco_status loco_cuda_download(loco_cuda_ctx *ctx, void *host, const void *dev, size_t bytes,
                               loco_error *err);
/* Device-to-device copy of `bytes` on the context's stream; returns when it is done. */
loco_status loco_cuda_copy(loco_cuda_ctx *ctx, void *dst, const void *src, size_t bytes,
                           loco_error *err);

/* Page-lock an existing host buffer so copies to and from it run at full bus speed (and
 * release it before freeing the buffer). LOCO_ERR_CUDA if the driver refuses. */
loco_status loco_cuda_pin(void *host, size_t bytes, loco_error *err);
void loco_cuda_unpin(void *host); /* NULL is fine */

/* Zero `bytes` of device memory (queued on the context's stream). */
loco_status loco_cuda_zero(loco_cuda_ctx *ctx, void *dev, size_t bytes, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * The GPT model on one GPU: the same model as src/model.h (MHA/GQA/MQA, cross-layer K/V sharing),
 * over the same parameter table. src/model.c drives it through its backend table; tests and
 * benchmarks go through src/model.h. */

#define LOCO_CUDA_MAX_LAYERS 64

/* The model's shape (src/config.c's model section; kv_src as in src/model.h). */
typedef struct loco_cuda_gpt_config {
    int n_layer, n_embd, n_head, n_kv_head, ctx, vocab;
    int kv_src[LOCO_CUDA_MAX_LAYERS];
} loco_cuda_gpt_config;

typedef struct loco_cuda_gpt loco_cuda_gpt;

/* Allocate the model for batches of up to B x T tokens on ctx's device. `table` is the
 * parameter table (src/model.h's layout; copied). Requirements beyond src/model.h's: n_embd and
 * head size multiples of 8. Parameters start at zero. Errors: LOCO_ERR_CONFIG naming the field,
 * LOCO_ERR_NOMEM (device memory, with the bytes wanted), LOCO_ERR_CUDA. */
loco_status loco_cuda_gpt_init(loco_cuda_gpt **gpt, loco_cuda_ctx *ctx,
                               const loco_cuda_gpt_config *cfg, const loco_tensor_table *table,
                               int B, int T, loco_error *err);
void loco_cuda_gpt_free(loco_cuda_gpt *gpt); /* NULL is fine */

/* Device buffers over the parameter table: fp32 master parameters, their bf16 copy (what the
 * layers read) and fp32 gradients, each table->numel elements. */
float *loco_cuda_gpt_params(loco_cuda_gpt *gpt);
uint16_t *loco_cuda_gpt_params_bf16(loco_cuda_gpt *gpt);
float *loco_cuda_gpt_grads(loco_cuda_gpt *gpt);
loco_cuda_ctx *loco_cuda_gpt_ctx(loco_cuda_gpt *gpt);

/* Host <-> device copies of all parameters (upload also refreshes the bf16 copy) and gradients. */
loco_status loco_cuda_gpt_upload_params(loco_cuda_gpt *gpt, const float *host, loco_error *err);
loco_status loco_cuda_gpt_download_params(loco_cuda_gpt *gpt, float *host, loco_error *err);
loco_status loco_cuda_gpt_download_grads(loco_cuda_gpt *gpt, float *host, loco_error *err);
/* Rebuild the bf16 copy from the master parameters (after something else wrote them). */
loco_status loco_cuda_gpt_refresh_bf16(loco_cuda_gpt *gpt, loco_error *err);

/* Forward over host tokens (B, T) (already range-checked by the caller). With targets, *loss
 * receives the mean cross-entropy and the logits are replaced by the loss gradient, ready for
 * backward; without, the logits stay for loco_cuda_gpt_download_logits and *loss is NAN. */
loco_status loco_cuda_gpt_forward(loco_cuda_gpt *gpt, const uint16_t *tokens,
                                  const uint16_t *targets, int B, int T, float *loss,
                                  loco_error *err);
/* Add the gradient of the last forward's mean loss to the gradients (+=). Queued on the stream:
 * returns before the GPU is done (errors of queued work show at the next synchronizing call). */
loco_status loco_cuda_gpt_backward(loco_cuda_gpt *gpt, loco_error *err);
loco_status loco_cuda_gpt_zero_grad(loco_cuda_gpt *gpt, loco_error *err);
/* The last forward's logits (B, T, vocab) as fp32 (forward without targets only). */
loco_status loco_cuda_gpt_download_logits(loco_cuda_gpt *gpt, float *host, loco_error *err);

/* Gradient readiness, for overlapping communication with backward: once loco_cuda_gpt_backward
 * has queued the last work on a range [begin, end) of the gradient buffer, it calls
 * `hook(user, layer, begin, end)` on the host: each block's tensors (layer = n_layer - 1 down to
 * 0; a producer's K/V gradients already hold every reader's share), then the embeddings (wte,
 * wpe) and the final LayerNorm (layer -1, two calls). The ranges tile the buffer. A hook queues
 * work that waits for the compute stream (loco_cuda_nccl_allreduce_mean does). NULL removes it. */
typedef void (*loco_cuda_grad_hook)(void *user, int layer, size_t begin, size_t end);
void loco_cuda_gpt_set_grad_hook(loco_cuda_gpt *gpt, loco_cuda_grad_hook hook, void *user);

/* Per-layer GPU timing: with profiling on, CUDA events bracket every layer call (a few
 * microseconds of overhead a step). The report prints milliseconds per step (per forward) by
 * layer kind, largest first, and starts the counts afresh. */
loco_status loco_cuda_gpt_profile(loco_cuda_gpt *gpt, bool on, loco_error *err);
loco_status loco_cuda_gpt_profile_report(loco_cuda_gpt *gpt, FILE *out, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Optimizers on device buffers (the formulas of optim/optim.h, elementwise in fp32). Weight
 * decay applies to the elements a loco_cuda_decay marks (tensors with >= 2 dimensions). Each
 * update also writes the bf16 copy of the parameters when params_bf16 is not NULL. */

typedef struct loco_cuda_decay loco_cuda_decay;

/* Segments of the parameter buffer that get weight decay: the tensors of `table` with ndim >= 2,
 * or every element when table is NULL (then n gives the length). */
loco_status loco_cuda_decay_init(loco_cuda_decay **decay, const loco_tensor_table *table,
                                 size_t n, loco_error *err);
void loco_cuda_decay_free(loco_cuda_decay *decay);

/* sqrt(sum g^2) in double, in a fixed order; NaN/Inf if any element is. Synchronizes. */
loco_status loco_cuda_grad_norm(loco_cuda_ctx *ctx, const float *grads, size_t n, double *norm,
                                loco_error *err);
/* x *= s (n elements). */
loco_status loco_cuda_scale(loco_cuda_ctx *ctx, float *x, size_t n, float s, loco_error *err);

/* AdamW, torch's operation order (optim/adamw.c); t = update number from 1. m, v: (n). */
loco_status loco_cuda_adamw_update(loco_cuda_ctx *ctx, float *params, uint16_t *params_bf16,
                                   const float *grads, float *m, float *v,
                                   const loco_cuda_decay *decay, float lr, float beta1,
                                   float beta2, float eps, float weight_decay, int64_t t,
                                   size_t n, loco_error *err);

/* SGD with momentum / Nesterov and decoupled decay (optim/sgd.c); buf (n) NULL when momentum is
 * 0. */
loco_status loco_cuda_sgd_update(loco_cuda_ctx *ctx, float *params, uint16_t *params_bf16,
                                 const float *grads, float *buf, const loco_cuda_decay *decay,
                                 float lr, float momentum, bool nesterov, float weight_decay,
                                 size_t n, loco_error *err);

/* out = a - b elementwise in fp32 (bit-identical to the same C loop on the host): DiLoCo's
 * pseudo-gradient theta_global - theta_local. out, a, b: (n) device; out may alias neither. */
loco_status loco_cuda_sub(loco_cuda_ctx *ctx, float *out, const float *a, const float *b,
                          size_t n, loco_error *err);

/* DiLoCo's outer step (torch.optim.SGD(lr, momentum mu, nesterov=True) on the outer copy):
 *     delta = averaged pseudo-gradient (outer - local, summed and scaled by the caller)
 *     mom   = mu mom + delta;  outer -= lr (delta + mu mom)
 * then the local parameters restart from the new outer ones (local = outer; bf16 copy too).
 * outer, local, delta, mom: (n) device fp32. */
loco_status loco_cuda_outer_nesterov(loco_cuda_ctx *ctx, float *outer, float *local,
                                     uint16_t *local_bf16, const float *delta, float *mom,
                                     float lr, float mu, size_t n, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Several GPUs of one host as one worker (NCCL). One process per GPU; the processes agree on an
 * NCCL unique id through loco's own bootstrap (rank 0 makes it, collectives/comm.h's
 * loco_broadcast carries it), so no port is hard-coded. Gradients are averaged range by range as
 * the backward pass finishes them (loco_cuda_gpt_set_grad_hook), on a communication stream that
 * overlaps the rest of the backward pass. NVLink multicast (NVLS) is not used. */

#define LOCO_NCCL_ID_BYTES 128

typedef struct loco_cuda_nccl loco_cuda_nccl;

/* True when this build has NCCL (LOCO_HAVE_NCCL 1). */
bool loco_cuda_nccl_built(void);

/* A fresh NCCL unique id (rank 0 calls this and shares the bytes). */
loco_status loco_cuda_nccl_unique_id(uint8_t id[LOCO_NCCL_ID_BYTES], loco_error *err);

/* Join the communicator of nranks GPUs as `rank`, on ctx's device (one per process). Collective:
 * every rank calls it with the same id. Errors: LOCO_ERR_CUDA (NCCL's message logged),
 * LOCO_ERR_UNSUPPORTED without NCCL. */
loco_status loco_cuda_nccl_init(loco_cuda_nccl **nccl, loco_cuda_ctx *ctx,
                                const uint8_t id[LOCO_NCCL_ID_BYTES], int nranks, int rank,
                                loco_error *err);
void loco_cuda_nccl_free(loco_cuda_nccl *nccl); /* NULL is fine */

/* Queue: average buf (n floats) over the ranks in place, after everything queued so far on the
 * context's stream, on the communication stream (every rank must queue the same sequence). */
loco_status loco_cuda_nccl_allreduce_mean(loco_cuda_nccl *nccl, float *buf, size_t n,
                                          loco_error *err);

/* Make the context's stream wait for every allreduce queued so far (before the optimizer). */
loco_status loco_cuda_nccl_join(loco_cuda_nccl *nccl, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Quantizers on the GPU: the payload of compress/'s bucketed quantizers (max-min, QSGD, FP4,
 * ternary, sign; layout in compress/quant_impl.h), byte for byte what the CPU encoder writes for
 * the same input, parameters and draws, made in one pass over the input (a warp per bucket:
 * statistics, scales, codes, packing). compress/codec.h's loco_codec_encode_cuda adds the
 * header. Buckets of 1..LOCO_CUDA_QUANT_MAX_BUCKET elements (the CPU's short-bucket path). */

#define LOCO_CUDA_QUANT_MAX_BUCKET 4000

typedef enum loco_cuda_quant_kind {
    LOCO_CUDA_QUANT_MAXMIN = 0,
    LOCO_CUDA_QUANT_QSGD = 1,
    LOCO_CUDA_QUANT_FP4 = 2,
    LOCO_CUDA_QUANT_TERNARY = 3,
    LOCO_CUDA_QUANT_SIGN = 4,
} loco_cuda_quant_kind;

typedef struct loco_cuda_quant_params {
    loco_cuda_quant_kind kind;
    int bits;          /* code bits: max-min 1..8, QSGD 2..8, FP4 4, sign 1, ternary 0 (base 3) */
    size_t bucket;     /* elements per scale bucket, 1..LOCO_CUDA_QUANT_MAX_BUCKET */
    bool stochastic;   /* stochastic rounding (never for sign) */
    float clip_sigma;  /* ternary: clip at clip_sigma * std (0 = off) */
    uint64_t seed;     /* draws of element i: loco_rng_block(seed, stream, i / 8) (codec.h) */
    uint64_t stream;
} loco_cuda_quant_params;

/* Bytes of the payload for n elements (the CPU's loco_codec_bound minus the header). */
size_t loco_cuda_quant_payload_bytes(const loco_cuda_quant_params *p, size_t n);

/* Encode device input in (n floats) into device payload (loco_cuda_quant_payload_bytes bytes),
 * on ctx's stream; synchronizes to report errors: LOCO_ERR_NONFINITE (a NaN/Inf input),
 * LOCO_ERR_RANGE (a scale not representable in fp32), LOCO_ERR_INVALID_ARG (parameters). */
loco_status loco_cuda_quant_encode(loco_cuda_ctx *ctx, const loco_cuda_quant_params *p,
                                   const float *in, size_t n, uint8_t *payload, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Top-k by magnitude on the GPU (cuda/topk.cu): exactly compress/topk.h's selection (the k
 * largest |x|, ties toward the lowest index; indices ascending, val[j] = x[idx[j]]), by radix
 * select on the magnitude bits: three histogram passes (11 + 10 + 10 bits) fix the k-th largest
 * magnitude, a counting pass and a writing pass compact the kept elements in index order — five
 * reads of the input. compress/codec.h's loco_codec_encode_cuda frames the result as the CPU's
 * top-k message. */

/* Device scratch bytes loco_cuda_topk_select needs for n elements (8 KB + 8 bytes per 4096). */
size_t loco_cuda_topk_scratch_bytes(size_t n);

/* Select the top k of device x (n floats, n < 2^32, k <= n) into device idx (k) and val (k), on
 * ctx's stream; scratch: loco_cuda_topk_scratch_bytes(n) device bytes, 8-byte aligned.
 * Synchronizes. Errors: LOCO_ERR_NONFINITE (a NaN/Inf input), LOCO_ERR_INVALID_ARG,
 * LOCO_ERR_CUDA. */
loco_status loco_cuda_topk_select(loco_cuda_ctx *ctx, const float *x, size_t n, size_t k,
                                  uint32_t *idx, float *val, void *scratch, loco_error *err);

/* DCT-chunk top-k (compress/dct.h's codec) on the GPU: one block per chunk computes the chunk's
 * 2-D DCT-II with the CPU's operation order and rounding (bit-identical coefficients), keeps
 * the kc largest |X| (ties to the lower local index) and writes the codec's payload. */
typedef struct loco_cuda_dct_params {
    size_t rows, cols;          /* the tensor (row-major) */
    size_t rc, cc;              /* chunk shape: rc | rows, cc | cols, each 1..64 */
    size_t kc;                  /* coefficients kept per chunk, 1..rc cc */
    int index_bits;             /* bits per local index: ceil(log2(rc cc)), at most 12 */
    const float *basis_rows;    /* device (rc x rc): loco_dct_basis(rc) */
    const float *basis_cols_t;  /* device (cc x cc): loco_dct_basis(cc) transposed */
} loco_cuda_dct_params;

/* Encode device in (rows x cols) into device payload: the K = chunks x kc values, then each
 * chunk's packed local indices (compress/dct.h's payload, without the message header).
 * Synchronizes. Errors: LOCO_ERR_NONFINITE (NaN/Inf input), LOCO_ERR_RANGE (a coefficient
 * overflows fp32), LOCO_ERR_INVALID_ARG (geometry), LOCO_ERR_CUDA. */
loco_status loco_cuda_dct_topk_encode(loco_cuda_ctx *ctx, const loco_cuda_dct_params *p,
                                      const float *in, uint8_t *payload, loco_error *err);

#ifdef __cplusplus
}
#endif

#endif /* LOCO_CUDA_CUDA_H */
