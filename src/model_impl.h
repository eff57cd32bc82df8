/* src/model_impl.h — private to src/model*.c and decode.c: the model's structs (views into the
 * flat parameter, gradient and activation buffers) and its backend table.
 *
 * loco_model is one struct for every device. The device-independent part (configuration,
 * parameter table, host parameters and gradients, the last batch's tokens) is filled by
 * model.c; a backend (model.c's CPU backend, model_cuda.c's CUDA backend) owns the rest and
 * implements the steps. model.c picks the backend once, at init; nothing else branches on the
 * device. */
#ifndef LOCO_SRC_MODEL_IMPL_H
#define LOCO_SRC_MODEL_IMPL_H

#include "cuda/cuda.h"
#include "src/gemm.h"
#include "src/model.h"

/* One block's parameters (or their gradients): pointers into the flat buffer. */
typedef struct layer_weights {
    float *ln1w, *ln1b; /* (C) */
    float *qkvw;        /* (QKV_l, C): q rows, then k and v rows for producers */
    float *qkvb;        /* (QKV_l) */
    float *attprojw;    /* (C, C) */
    float *attprojb;    /* (C) */
    float *ln2w, *ln2b; /* (C) */
    float *fcw;         /* (4C, C) */
    float *fcb;         /* (4C) */
    float *fcprojw;     /* (C, 4C) */
    float *fcprojb;     /* (C) */
} layer_weights;

typedef struct model_weights {
    float *wte;         /* (V, C) */
    float *wpe;         /* (ctx, C) */
    float *lnfw, *lnfb; /* (C) */
    layer_weights layer[LOCO_MAX_LAYERS];
} model_weights;

/* One block's saved activations, each sized for (B, T) at init. */
typedef struct layer_acts {
    float *ln1;                 /* (B, T, C) */
    float *ln1_mean, *ln1_rstd; /* (B, T) */
    float *qkv;                 /* (B, T, QKV_l) */
    float *att;                 /* (B, NH, T, T) softmax probabilities */
    float *atty;                /* (B, T, C) attention output before c_proj */
    float *res2;                /* (B, T, C) residual after attention */
    float *ln2;                 /* (B, T, C) */
    float *ln2_mean, *ln2_rstd; /* (B, T) */
    float *fch;                 /* (B, T, 4C) before GELU */
    float *fch_gelu;            /* (B, T, 4C) */
    float *res3;                /* (B, T, C) block output */
} layer_acts;

struct loco_model {
    loco_model_config cfg;
    int C, NH, NKV, hs, kv_dim;    /* kv_dim = NKV * hs */
    int qkv_dim[LOCO_MAX_LAYERS];  /* C + 2 kv_dim for producers, C for consumers */
    int kv_index[LOCO_MAX_LAYERS]; /* producer's slot in a K/V cache, -1 for consumers */
    loco_tensor_table table;
    float *params; /* (num_params) */
    float *grads;  /* (num_params) */
    model_weights w, g;

    int max_B, max_T;
    float *acts;    /* one allocation for everything below */
    float *encoded; /* (B, T, C) */
    layer_acts layer[LOCO_MAX_LAYERS];
    float *lnf;                 /* (B, T, C) */
    float *lnf_mean, *lnf_rstd; /* (B, T) */
    float *logits;              /* (B, T, V); dlogits in place during backward */
    float *lse, *losses;        /* (B, T) */
    /* gradients of activations */
    float *dresidual;             /* (B, T, C) the residual stream's gradient */
    float *dln;                   /* (B, T, C) gradient of a LayerNorm output */
    float *dfch;                  /* (B, T, 4C) */
    float *datty;                 /* (B, T, C) */
    float *dq;                    /* (B, T, C) a consumer's dQ */
    float *dqkv[LOCO_MAX_LAYERS]; /* (B, T, QKV_l) per producer: [dQ | dK | dV], NULL else */
    float *att_scratch;           /* (threads, loco_attention_scratch_floats(T, hs)) */
    uint16_t *tokens, *targets;   /* (B, T) copies of the last forward's inputs */

    loco_gemm_workspace ws;
    loco_model_profile profile;
    loco_device device;
    const struct model_backend *backend;
    int cuda_device;     /* CUDA: the device index */
    loco_cuda_ctx *cuda; /* CUDA: stream, cuBLASLt */
    loco_cuda_gpt *gpu;  /* CUDA: parameters, gradients and activations on the device;
                            params/grads above are host mirrors */
    float *host_logits;  /* CUDA: (B, T, V) host copy, made on the first request */
    int B, T;            /* shape of the last forward */
    bool backward_ready; /* the last forward had targets and backward has not run */
};

/* The steps a device implements. Tokens and targets of the batch are in m->tokens/m->targets,
 * m->B and m->T set, before forward is called. */
typedef struct model_backend {
    const char *name;
    loco_status (*init)(loco_model *m, loco_error *err); /* after the common fields */
    void (*release)(loco_model *m);
    /* mean loss into *loss (NAN without targets) */
    loco_status (*forward)(loco_model *m, bool with_targets, float *loss, loco_error *err);
    loco_status (*backward)(loco_model *m, loco_error *err);
    loco_status (*zero_grad)(loco_model *m, loco_error *err);
    /* host parameters were written: bring the device copy up to date */
    loco_status (*params_written)(loco_model *m, loco_error *err);
    /* copy the device's parameters and gradients into the host buffers */
    loco_status (*to_host)(loco_model *m, loco_error *err);
    const float *(*logits)(loco_model *m);
} model_backend;

extern const model_backend loco_model_cpu_backend;  /* model.c */
extern const model_backend loco_model_cuda_backend; /* model_cuda.c */

/* Carve n floats off an allocation at *cursor, keeping the next carve 64-byte aligned. */
static inline float *take(float **cursor, size_t n)
{
    float *p = *cursor;
    *cursor += (n + 15) & ~(size_t)15; /* keep every buffer 64-byte aligned */
    return p;
}

/* n rounded up to a multiple of 16 floats (64 bytes). */
static inline size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

#endif /* LOCO_SRC_MODEL_IMPL_H */
