/* optim/optim.h — inner optimizers (SGD with momentum/Nesterov, AdamW) on flat fp32 buffers,
 * global-norm gradient clipping and the learning-rate schedule.
 *
 * An optimizer updates one flat parameter buffer from one flat gradient buffer of the same
 * length, keeping its state (moments) in one allocation. It knows nothing about the model: a
 * tensor table, when given, only decides which tensors get weight decay (those with >= 2
 * dimensions: matrices and embeddings, not biases or LayerNorm gains — the GPT-2/nanoGPT
 * convention). The update formulas follow torch.optim exactly (operation order included):
 *
 *   AdamW (t = step number from 1):  p *= 1 - lr wd
 *                                    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *                                    p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *   SGD:  p *= 1 - lr wd   (decoupled, like AdamW; torch's SGD adds wd p to g instead)
 *         buf = momentum buf + g          (buf starts at 0, so the first buf = g, as in torch)
 *         d = nesterov ? g + momentum buf : buf   (momentum 0: d = g)
 *         p -= lr d
 *
 * Elementwise arithmetic in fp32; norms and schedule in double. Updates are elementwise, so they
 * are bit-identical for any thread count.
 */
#ifndef LOCO_OPTIM_OPTIM_H
#define LOCO_OPTIM_OPTIM_H

#include "base/base.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum loco_optim_kind {
    LOCO_OPTIM_SGD = 0,
    LOCO_OPTIM_ADAMW = 1,
} loco_optim_kind;

typedef enum loco_lr_schedule {
    LOCO_LR_CONSTANT = 0, /* lr after warmup */
    LOCO_LR_COSINE = 1,   /* linear warmup, cosine decay to min_lr at total_steps */
} loco_lr_schedule;

typedef struct loco_optim_params {
    loco_optim_kind kind;
    float lr;         /* peak learning rate */
    float min_lr;     /* floor of the cosine schedule */
    int warmup_steps; /* linear warmup from 0 */
    int total_steps;  /* schedule length (train.steps unless set) */
    loco_lr_schedule schedule;
    float beta1, beta2; /* AdamW */
    float eps;          /* AdamW */
    float weight_decay; /* decoupled (AdamW) or L2-free decay applied to weights (SGD) */
    float momentum;     /* SGD */
    bool nesterov;      /* SGD */
    float grad_clip;    /* global-norm clipping threshold (0 = off) */
} loco_optim_params;

struct loco_cuda_ctx;   /* cuda/cuda.h */
struct loco_cuda_decay; /* cuda/cuda.h */

/* An optimizer over n parameters. */
typedef struct loco_optim {
    loco_optim_params params;
    size_t n;     /* elements of the parameter buffer */
    float *state; /* (slots, n): AdamW exp_avg then exp_avg_sq; SGD momentum_buffer (if
                     momentum > 0); NULL when there are no slots. Device memory for a CUDA
                     optimizer. */
    int slots;
    int64_t step; /* updates applied so far (AdamW's t is step + 1 during an update) */
    struct loco_cuda_ctx *cuda;    /* NULL: host buffers; else the device running the updates */
    struct loco_cuda_decay *decay; /* CUDA: the weight-decayed ranges fixed at init */
} loco_optim;

/* AdamW, lr 6e-4, min_lr 6e-5, warmup 100 of 1000 steps, cosine, betas (0.9, 0.95), eps 1e-8,
 * weight decay 0.1, momentum 0.9 (if switched to SGD), no Nesterov, clip 1.0. */
void loco_optim_params_default(loco_optim_params *p);

/* Check every field; LOCO_ERR_CONFIG naming the key (optim.lr, optim.beta2, ...) otherwise. */
loco_status loco_optim_params_validate(const loco_optim_params *p, loco_error *err);

/* Validate p and allocate zeroed state for n parameters. On failure opt is left empty. */
loco_status loco_optim_init(loco_optim *opt, const loco_optim_params *p, size_t n, loco_error *err);
void loco_optim_free(loco_optim *opt);

/* Zero the state and the step counter (a fresh optimizer over the same buffer). */
void loco_optim_reset(loco_optim *opt);

/* The state vectors, for checkpoints: slot i (0 <= i < opt->slots) is n floats named
 * loco_optim_slot_name (torch's names: "exp_avg", "exp_avg_sq", "momentum_buffer"). */
float *loco_optim_slot(const loco_optim *opt, int slot);
const char *loco_optim_slot_name(const loco_optim *opt, int slot);
/* "sgd" or "adamw". */
const char *loco_optim_kind_name(loco_optim_kind kind);

/* The learning rate for update number `step` (0-based): lr (step + 1) / warmup_steps during
 * warmup; then lr (constant) or min_lr + (lr - min_lr)(1 + cos(pi progress)) / 2 with progress =
 * (step - warmup) / (total - warmup) clamped to [0, 1] (cosine). */
float loco_optim_lr(const loco_optim_params *p, int64_t step);

/* The global L2 norm of grads (n), summed in double in a fixed order (thread-count independent).
 * Returns NaN or Inf if any element is. */
double loco_grad_norm(const float *grads, size_t n);

/* Global-norm clipping (torch.nn.utils.clip_grad_norm_): norm = loco_grad_norm; if it is not
 * finite, return LOCO_ERR_NONFINITE and leave grads unchanged (the caller skips the step); if
 * max_norm > 0 and norm > max_norm, scale grads by max_norm / (norm + 1e-6). *norm_out (may be
 * NULL) receives the norm before clipping. */
loco_status loco_grad_clip(float *grads, size_t n, float max_norm, double *norm_out,
                           loco_error *err);

/* Apply one update with learning rate lr (usually loco_optim_lr(&opt->params, opt->step)) and
 * advance opt->step. decay_table (may be NULL) limits weight decay to its tensors with >= 2
 * dimensions; it must describe exactly opt->n elements. LOCO_ERR_INVALID_ARG if it does not
 * (nothing is changed). Does not check for non-finite gradients: clip (or check) first. */
loco_status loco_optim_step(loco_optim *opt, float *params, const float *grads, float lr,
                            const loco_tensor_table *decay_table, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * On a GPU (cuda/cuda.h): the same updates on device buffers, queued on ctx's stream. */

/* Like loco_optim_init with the state on ctx's device (loco_optim_slot then returns device
 * pointers: copy them with loco_cuda_download for checkpoints). decay_table (may be NULL: decay
 * everything) fixes which elements get weight decay, as in loco_optim_step. Errors as
 * loco_optim_init, plus LOCO_ERR_UNSUPPORTED in a build without CUDA. loco_optim_free and
 * loco_optim_reset handle both kinds. */
loco_status loco_optim_init_cuda(loco_optim *opt, const loco_optim_params *p, size_t n,
                                 struct loco_cuda_ctx *ctx, const loco_tensor_table *decay_table,
                                 loco_error *err);

/* loco_optim_step on device params and grads (n elements each); params_bf16 (may be NULL)
 * receives the bf16 copy of the updated parameters in the same pass. LOCO_ERR_INVALID_ARG for a
 * host optimizer. */
loco_status loco_optim_step_cuda(loco_optim *opt, float *params, uint16_t *params_bf16,
                                 const float *grads, float lr, loco_error *err);

/* loco_grad_clip on device gradients (the norm in double, fixed order; synchronizes). */
loco_status loco_grad_clip_cuda(struct loco_cuda_ctx *ctx, float *grads, size_t n,
                                float max_norm, double *norm_out, loco_error *err);

#endif /* LOCO_OPTIM_OPTIM_H */
