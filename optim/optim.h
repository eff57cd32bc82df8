/* optim/optim.h — inner optimizers (SGD with momentum/Nesterov, AdamW) on flat fp32 buffers,
 * global-norm gradient clipping and the learning-rate schedule.
 *
 * The model issue fills in this header; the parameter struct is fixed here first because
 * src/config.c fills it from YAML (optim: {...}).
 */
#ifndef LOCO_OPTIM_OPTIM_H
#define LOCO_OPTIM_OPTIM_H

#include "base/base.h"

#include <stdbool.h>

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
    float lr;             /* peak learning rate */
    float min_lr;         /* floor of the cosine schedule */
    int warmup_steps;     /* linear warmup from 0 */
    int total_steps;      /* schedule length (train.steps unless set) */
    loco_lr_schedule schedule;
    float beta1, beta2;   /* AdamW */
    float eps;            /* AdamW */
    float weight_decay;   /* decoupled (AdamW) or L2-free decay applied to weights (SGD) */
    float momentum;       /* SGD */
    bool nesterov;        /* SGD */
    float grad_clip;      /* global-norm clipping threshold (0 = off) */
} loco_optim_params;

#endif /* LOCO_OPTIM_OPTIM_H */
