/* src/model_cuda.c — the model's CUDA backend (model_impl.h's table): the device half of a
 * loco_model lives in cuda/'s GPU model (cuda/cuda.h), which runs the same layers as the CPU
 * backend on the GPU. The host buffers of loco_model (params, grads) are mirrors, filled on
 * request. In a build without CUDA every entry fails at init with LOCO_ERR_UNSUPPORTED (cuda.h). */
#include "src/model_impl.h"

#include <math.h>
#include <stdlib.h>

static loco_status cuda_init(loco_model *m, loco_error *err)
{
    LOCO_TRY(loco_cuda_ctx_init(&m->cuda, m->cuda_device, err));
    loco_cuda_gpt_config g;
    memset(&g, 0, sizeof g);
    g.n_layer = m->cfg.n_layer;
    g.n_embd = m->cfg.n_embd;
    g.n_head = m->cfg.n_head;
    g.n_kv_head = m->cfg.n_kv_head;
    g.ctx = m->cfg.ctx;
    g.vocab = m->cfg.vocab;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        g.kv_src[l] = m->cfg.kv_src[l];
    }
    return loco_cuda_gpt_init(&m->gpu, m->cuda, &g, &m->table, m->max_B, m->max_T, err);
}

static void cuda_release(loco_model *m)
{
    loco_cuda_gpt_free(m->gpu);
    loco_cuda_ctx_free(m->cuda);
    free(m->host_logits);
}

static loco_status cuda_forward(loco_model *m, bool with_targets, float *loss, loco_error *err)
{
    free(m->host_logits); /* stale now */
    m->host_logits = NULL;
    return loco_cuda_gpt_forward(m->gpu, m->tokens, with_targets ? m->targets : NULL, m->B, m->T,
                                 loss, err);
}

static loco_status cuda_backward(loco_model *m, loco_error *err)
{
    return loco_cuda_gpt_backward(m->gpu, err);
}

static loco_status cuda_zero_grad(loco_model *m, loco_error *err)
{
    return loco_cuda_gpt_zero_grad(m->gpu, err);
}

static loco_status cuda_params_written(loco_model *m, loco_error *err)
{
    return loco_cuda_gpt_upload_params(m->gpu, m->params, err);
}

static loco_status cuda_to_host(loco_model *m, loco_error *err)
{
    LOCO_TRY(loco_cuda_gpt_download_params(m->gpu, m->params, err));
    return loco_cuda_gpt_download_grads(m->gpu, m->grads, err);
}

static const float *cuda_logits(loco_model *m)
{
    if (NULL == m->host_logits) {
        size_t n = (size_t)m->B * m->T * m->cfg.vocab;
        m->host_logits = malloc(n * sizeof(float));
        loco_error err = {0};
        if (NULL == m->host_logits ||
            LOCO_OK != loco_cuda_gpt_download_logits(m->gpu, m->host_logits, &err)) {
            LOCO_ERROR("GPU logits: %s", NULL == m->host_logits ? "out of memory" : err.msg);
            free(m->host_logits);
            m->host_logits = NULL;
        }
    }
    return m->host_logits;
}

const model_backend loco_model_cuda_backend = {
    .name = "cuda",
    .init = cuda_init,
    .release = cuda_release,
    .forward = cuda_forward,
    .backward = cuda_backward,
    .zero_grad = cuda_zero_grad,
    .params_written = cuda_params_written,
    .to_host = cuda_to_host,
    .logits = cuda_logits,
};
