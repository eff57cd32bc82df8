/* optim/optim_cuda.c — the optimizers on a GPU (see optim.h): state allocation and the step
 * dispatcher over device buffers; the elementwise kernels are cuda/optim.cu's. */
#include "optim/optim_impl.h"

#include "cuda/cuda.h"

#include <math.h>
#include <string.h>

loco_status loco_optim_init_cuda(loco_optim *opt, const loco_optim_params *p, size_t n,
                                 struct loco_cuda_ctx *ctx, const loco_tensor_table *decay_table,
                                 loco_error *err)
{
    memset(opt, 0, sizeof *opt);
    LOCO_TRY(loco_optim_params_validate(p, err));
    if (NULL != decay_table && decay_table->numel != n) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "optimizer over %zu parameters given a tensor table of %zu", n,
                              decay_table->numel);
    }
    int slots = LOCO_OPTIM_ADAMW == p->kind ? 2 : (p->momentum > 0.0f ? 1 : 0);
    loco_status st = loco_cuda_decay_init(&opt->decay, decay_table, n, err);
    if (LOCO_OK == st && slots > 0 && n > 0) {
        st = loco_cuda_alloc((void **)&opt->state, (size_t)slots * n * sizeof(float), err);
    }
    opt->cuda = ctx; /* from here on loco_optim_free releases device memory */
    if (LOCO_OK != st) {
        loco_optim_free(opt);
        return st;
    }
    opt->params = *p;
    opt->n = n;
    opt->slots = n > 0 ? slots : 0;
    return LOCO_OK;
}

loco_status loco_optim_step_cuda(loco_optim *opt, float *params, uint16_t *params_bf16,
                                 const float *grads, float lr, loco_error *err)
{
    if (NULL == opt->cuda) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "loco_optim_step_cuda needs an optimizer made by "
                              "loco_optim_init_cuda");
    }
    const loco_optim_params *p = &opt->params;
    loco_status st;
    if (LOCO_OPTIM_ADAMW == p->kind) {
        st = loco_cuda_adamw_update(opt->cuda, params, params_bf16, grads, opt->state,
                                    opt->state + opt->n, opt->decay, lr, p->beta1, p->beta2,
                                    p->eps, p->weight_decay, opt->step + 1, opt->n, err);
    } else {
        st = loco_cuda_sgd_update(opt->cuda, params, params_bf16, grads,
                                  opt->slots > 0 ? opt->state : NULL, opt->decay, lr, p->momentum,
                                  p->nesterov, p->weight_decay, opt->n, err);
    }
    if (LOCO_OK == st) {
        opt->step++;
    }
    return st;
}

loco_status loco_grad_clip_cuda(struct loco_cuda_ctx *ctx, float *grads, size_t n,
                                float max_norm, double *norm_out, loco_error *err)
{
    double norm = 0.0;
    LOCO_TRY(loco_cuda_grad_norm(ctx, grads, n, &norm, err));
    if (NULL != norm_out) {
        *norm_out = norm;
    }
    if (!isfinite(norm)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE,
                              "gradient norm is %g: a NaN or Inf gradient (skip this step)", norm);
    }
    if (max_norm > 0.0f && norm > max_norm) {
        return loco_cuda_scale(ctx, grads, n, (float)((double)max_norm / (norm + 1e-6)), err);
    }
    return LOCO_OK;
}
