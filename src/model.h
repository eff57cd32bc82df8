/* src/model.h — the GPT model (DESIGN.md §5).
 *
 * The model issue fills in this header; the configuration struct is fixed here first because
 * src/config.c fills it from YAML (model: {...}).
 */
#ifndef LOCO_SRC_MODEL_H
#define LOCO_SRC_MODEL_H

#include "base/base.h"

#define LOCO_MAX_LAYERS 64

typedef struct loco_model_config {
    int n_layer;   /* transformer blocks, 1..LOCO_MAX_LAYERS */
    int n_embd;    /* width C, divisible by n_head */
    int n_head;    /* query heads */
    int n_kv_head; /* key/value heads: n_head (MHA), a divisor (GQA), 1 (MQA) */
    int ctx;       /* maximum sequence length (learned position embeddings) */
    int vocab;     /* vocabulary size (256 for the byte tokenizer) */
    int kv_src[LOCO_MAX_LAYERS]; /* layer whose K/V layer l attends with; kv_src[l] <= l and
                                    kv_src[kv_src[l]] == kv_src[l] (a producer) */
    float init_std; /* normal init std of weights (GPT-2: 0.02) */
} loco_model_config;

#endif /* LOCO_SRC_MODEL_H */
