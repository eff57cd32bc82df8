/* src/model.h — the GPT model on the CPU (DESIGN.md §5).
 *
 * GPT-2 style decoder: token + learned position embeddings, pre-LayerNorm blocks (causal
 * self-attention, tanh-GELU MLP), a final LayerNorm and an output layer tied to the token
 * embedding. Two knobs shrink the K/V cache (research/kvshare.md §5):
 *   n_kv_head  K/V heads per layer: n_head (MHA), a divisor (GQA), 1 (MQA); query head h reads
 *              K/V head h / (n_head / n_kv_head) (contiguous groups);
 *   kv_src[l]  the layer whose K/V layer l attends with. kv_src[l] == l: l produces K/V
 *              (holds Q, K and V projections); otherwise l is a consumer (holds Q only) and
 *              attends with the K/V activations of its producer. A producer's K/V gradient is
 *              the sum over all its readers, summed before the producer's matmul backward.
 *
 * Parameters are one flat fp32 buffer described by a tensor table (base/tensor.h), in this
 * order (C = n_embd, KV = n_kv_head * C / n_head, V = vocab):
 *     wte (V, C), wpe (ctx, C), then per layer l:
 *     h.l.ln_1.weight (C), h.l.ln_1.bias (C),
 *     h.l.attn.q.weight (C, C), [h.l.attn.k.weight (KV, C), h.l.attn.v.weight (KV, C)],
 *     h.l.attn.q.bias (C), [h.l.attn.k.bias (KV), h.l.attn.v.bias (KV)],
 *     h.l.attn.c_proj.weight (C, C), h.l.attn.c_proj.bias (C),
 *     h.l.ln_2.weight (C), h.l.ln_2.bias (C),
 *     h.l.mlp.c_fc.weight (4C, C), h.l.mlp.c_fc.bias (4C),
 *     h.l.mlp.c_proj.weight (C, 4C), h.l.mlp.c_proj.bias (C),
 *     ln_f.weight (C), ln_f.bias (C).
 * [k, v] exist only for producers. Weights are (out, in) like torch.nn.Linear (GPT-2's HF
 * checkpoints store Conv1D (in, out): transpose when importing). A shared K/V tensor appears
 * once, under its producer. Gradients are a second buffer with the same table.
 *
 * Memory: parameters, gradients, activations (sized for B x T at init) and scratch are each one
 * allocation made by loco_model_init; forward, backward and decode_step allocate nothing.
 * Threads: OpenMP, up to omp_get_max_threads() at init. Results are bit-identical for any
 * thread count (layers.h), which makes resumed runs bit-identical to uninterrupted ones.
 */
#ifndef LOCO_SRC_MODEL_H
#define LOCO_SRC_MODEL_H

#include "base/base.h"

#include <stdint.h>

#define LOCO_MAX_LAYERS 64

typedef struct loco_model_config {
    int n_layer;                 /* transformer blocks, 1..LOCO_MAX_LAYERS */
    int n_embd;                  /* width C, divisible by n_head */
    int n_head;                  /* query heads */
    int n_kv_head;               /* key/value heads: n_head (MHA), a divisor (GQA), 1 (MQA) */
    int ctx;                     /* maximum sequence length (learned position embeddings) */
    int vocab;                   /* vocabulary size (256 for the byte tokenizer), at most 65536 */
    int kv_src[LOCO_MAX_LAYERS]; /* layer whose K/V layer l attends with; kv_src[l] <= l and
                                    kv_src[kv_src[l]] == kv_src[l] (a producer) */
    float init_std;              /* normal init std of weights (GPT-2: 0.02) */
} loco_model_config;

typedef struct loco_model loco_model;       /* opaque */
typedef struct loco_kv_cache loco_kv_cache; /* opaque: one sequence's K/V cache */

/* ---------------------------------------------------------------------------------------------
 * Configuration */

/* A small byte-level model: 4 layers, 128 wide, 4 heads (MHA), ctx 128, vocab 256, every layer
 * its own K/V producer, init_std 0.02. */
void loco_model_config_default(loco_model_config *cfg);

/* Check every field; LOCO_ERR_CONFIG with a message naming the key (model.n_head, model.kv_src[3],
 * ...) and the allowed values otherwise. */
loco_status loco_model_config_validate(const loco_model_config *cfg, loco_error *err);

/* Layers that produce K/V (kv_src[l] == l). cfg must be valid. */
int loco_model_n_kv_layers(const loco_model_config *cfg);

/* Floats one sequence of T tokens needs in a K/V cache:
 * n_kv_layers * 2 * n_kv_head * (n_embd / n_head) * T. Bytes = 4x that. */
size_t loco_model_kv_cache_numel(const loco_model_config *cfg, int T);

/* Build the parameter table of cfg (layout above) into an empty table (the caller frees it with
 * loco_tensor_table_free). Needs no model: checkpoints and converters use it too. */
loco_status loco_model_build_table(const loco_model_config *cfg, loco_tensor_table *table,
                                   loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Lifetime and buffers */

/* Where a model computes. */
typedef enum loco_device {
    LOCO_DEVICE_CPU = 0,  /* fp32, OpenMP; the oracle */
    LOCO_DEVICE_CUDA = 1, /* one GPU: bf16 activations, fp32 master weights and gradients */
} loco_device;

/* Validate cfg and allocate a model whose activations fit batches of up to B sequences of up to
 * T tokens (1 <= T <= cfg->ctx). Parameters start at zero: call loco_model_init_weights or load
 * a checkpoint. On failure *model is NULL and err says why (config error or out of memory). */
loco_status loco_model_init(loco_model **model, const loco_model_config *cfg, int B, int T,
                            loco_error *err);
void loco_model_free(loco_model *model); /* NULL is fine */

/* loco_model_init on a device: LOCO_DEVICE_CPU is loco_model_init; LOCO_DEVICE_CUDA keeps
 * parameters, gradients and activations on GPU `cuda_device` (cuda/cuda.h; n_embd and the head
 * size must be multiples of 8). On CUDA, loco_model_params/grads are host mirrors: whoever
 * writes host parameters (other than loco_model_init_weights, which uploads itself) calls
 * loco_model_upload_params; whoever reads them after device work calls loco_model_download.
 * Optimizers work on the device buffers (loco_model_device_*, optim's _cuda functions).
 * Errors as loco_model_init, plus LOCO_ERR_UNSUPPORTED in a build without CUDA and
 * LOCO_ERR_CUDA when the device cannot be opened. */
loco_status loco_model_init_device(loco_model **model, const loco_model_config *cfg, int B, int T,
                                   loco_device device, int cuda_device, loco_error *err);
loco_device loco_model_device(const loco_model *model);

/* CUDA: host parameters -> device (and its bf16 copy); device parameters and gradients -> host.
 * Both are no-ops on the CPU. */
loco_status loco_model_upload_params(loco_model *model, loco_error *err);
loco_status loco_model_download(loco_model *model, loco_error *err);

/* CUDA: the device buffers over the parameter table (num_params elements) and the context whose
 * stream runs the model; NULL on the CPU. */
float *loco_model_device_params(loco_model *model);
uint16_t *loco_model_device_params_bf16(loco_model *model);
float *loco_model_device_grads(loco_model *model);
struct loco_cuda_ctx *loco_model_cuda_ctx(loco_model *model);
struct loco_cuda_gpt *loco_model_cuda_gpt(loco_model *model); /* cuda/cuda.h's GPU model */

/* GPT-2 initialisation: weights ~ N(0, init_std) (the two c_proj weights of each block scaled by
 * 1/sqrt(2 n_layer)), biases 0, LayerNorm weights 1. Each tensor draws from a Philox stream keyed
 * by (seed, hash of its name), so tensors of the same name get the same values in models that
 * differ elsewhere (e.g. MHA vs a KV-sharing variant). */
loco_status loco_model_init_weights(loco_model *model, uint64_t seed); /* CUDA: uploads too */

const loco_model_config *loco_model_get_config(const loco_model *model);
const loco_tensor_table *loco_model_tensors(const loco_model *model);
size_t loco_model_num_params(const loco_model *model);
float *loco_model_params(loco_model *model); /* (num_params) */
float *loco_model_grads(loco_model *model);  /* (num_params), same table */

/* ---------------------------------------------------------------------------------------------
 * Training */

/* Run the model on tokens (B, T) (row-major, values < vocab). With targets (B, T), *loss is the
 * mean next-token cross-entropy (it may be NaN/Inf if the parameters are; the caller checks) and
 * backward may follow; with targets NULL only logits are computed and *loss is set to NAN.
 * loss may be NULL. Errors (nothing computed): B or T out of range (T > ctx, or larger than the
 * model was allocated for) -> LOCO_ERR_RANGE; a token or target >= vocab -> LOCO_ERR_RANGE naming
 * its position. The inputs are copied: the caller may reuse its buffers at once. */
loco_status loco_model_forward(loco_model *model, const uint16_t *tokens, const uint16_t *targets,
                               int B, int T, float *loss, loco_error *err);

/* The logits (B, T, vocab) of the last forward. Valid until the next backward or forward. A
 * CUDA model has them only after a forward without targets (with targets the fused classifier
 * overwrites them by the loss gradient) and returns NULL otherwise or if the copy fails. */
const float *loco_model_logits(const loco_model *model);

/* Add the gradient of the last forward's mean loss to the gradient buffer (+=, so micro-batches
 * accumulate; call loco_model_zero_grad to start afresh). LOCO_ERR_INVALID_ARG if the last
 * forward had no targets or backward already ran for it. */
loco_status loco_model_backward(loco_model *model, loco_error *err);

void loco_model_zero_grad(loco_model *model);

/* Where forward and backward spend their time, by kind of layer: seconds summed since init or
 * the last reset (a clock read per layer call, ~0.1% of a step). */
typedef enum loco_model_op {
    LOCO_OP_EMBEDDING = 0, /* token + position embeddings */
    LOCO_OP_LAYERNORM,
    LOCO_OP_MATMUL, /* every linear layer (the tied output layer and the MLP's fused GELU too) */
    LOCO_OP_ATTENTION,
    LOCO_OP_LOSS, /* softmax cross-entropy */
    LOCO_OP_COUNT,
} loco_model_op;

typedef struct loco_model_profile {
    double forward_s[LOCO_OP_COUNT];
    double backward_s[LOCO_OP_COUNT];
    int64_t forwards, backwards; /* calls counted */
} loco_model_profile;

loco_model_profile loco_model_get_profile(const loco_model *model);
void loco_model_reset_profile(loco_model *model);
const char *loco_model_op_name(loco_model_op op); /* "matmul", ... */

/* ---------------------------------------------------------------------------------------------
 * Incremental decoding */

/* A K/V cache for one sequence of up to max_T tokens (max_T <= ctx). It stores K and V only for
 * producing layers: loco_kv_cache_numel(cache) == loco_model_kv_cache_numel(cfg, max_T). */
loco_status loco_kv_cache_init(loco_kv_cache **cache, const loco_model *model, int max_T,
                               loco_error *err);
void loco_kv_cache_free(loco_kv_cache *cache);          /* NULL is fine */
void loco_kv_cache_reset(loco_kv_cache *cache);         /* forget the sequence; keep the memory */
int loco_kv_cache_len(const loco_kv_cache *cache);      /* tokens decoded so far */
size_t loco_kv_cache_numel(const loco_kv_cache *cache); /* floats of K/V storage held */

/* Feed the next token of the sequence (position loco_kv_cache_len) and write the logits of the
 * next-token distribution to logits (vocab). Equals the full forward's logits at that position.
 * Errors: token >= vocab, or the cache is full (max_T tokens) -> LOCO_ERR_RANGE (start a new
 * sequence, or keep the last ctx tokens and re-feed them after loco_kv_cache_reset). CPU models
 * only: a CUDA model returns LOCO_ERR_UNSUPPORTED. */
loco_status loco_model_decode_step(loco_model *model, loco_kv_cache *cache, uint16_t token,
                                   float *logits, loco_error *err);

#endif /* LOCO_SRC_MODEL_H */
