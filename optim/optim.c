/* optim/optim.c — optimizer parameters, lifetime, state slots, gradient clipping and the step
 * dispatcher (see optim.h). The update kernels are in adamw.c and sgd.c, the schedule in
 * schedule.c. */
#include "optim/optim_impl.h"

#include "cuda/cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void loco_optim_params_default(loco_optim_params *p)
{
    memset(p, 0, sizeof *p);
    p->kind = LOCO_OPTIM_ADAMW;
    p->lr = 6e-4f;
    p->min_lr = 6e-5f;
    p->warmup_steps = 100;
    p->total_steps = 1000;
    p->schedule = LOCO_LR_COSINE;
    p->beta1 = 0.9f;
    p->beta2 = 0.95f;
    p->eps = 1e-8f;
    p->weight_decay = 0.1f;
    p->momentum = 0.9f;
    p->nesterov = false;
    p->grad_clip = 1.0f;
}

static bool in_range(float x, float lo, float hi) { return isfinite(x) && x >= lo && x <= hi; }

loco_status loco_optim_params_validate(const loco_optim_params *p, loco_error *err)
{
    if (LOCO_OPTIM_SGD != p->kind && LOCO_OPTIM_ADAMW != p->kind) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "optim.kind = %d: must be sgd or adamw",
                              (int)p->kind);
    }
    if (!(isfinite(p->lr) && p->lr > 0.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "optim.lr = %g: must be finite and > 0",
                              (double)p->lr);
    }
    if (!in_range(p->min_lr, 0.0f, p->lr)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "optim.min_lr = %g: must be in [0, lr = %g]",
                              (double)p->min_lr, (double)p->lr);
    }
    if (p->warmup_steps < 0 || p->total_steps < 0) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "optim.warmup_steps = %d, optim.total_steps = %d: must be >= 0",
                              p->warmup_steps, p->total_steps);
    }
    if (LOCO_LR_CONSTANT != p->schedule && LOCO_LR_COSINE != p->schedule) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "optim.schedule = %d: must be constant or cosine", (int)p->schedule);
    }
    if (!in_range(p->beta1, 0.0f, 0.999999f) || !in_range(p->beta2, 0.0f, 0.999999f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "optim.beta1 = %g, optim.beta2 = %g: each must be in [0, 1)",
                              (double)p->beta1, (double)p->beta2);
    }
    if (!(isfinite(p->eps) && p->eps > 0.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "optim.eps = %g: must be finite and > 0",
                              (double)p->eps);
    }
    if (!in_range(p->weight_decay, 0.0f, INFINITY) || (double)p->lr * p->weight_decay >= 1.0) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "optim.weight_decay = %g: must be >= 0 with lr * weight_decay < 1",
                              (double)p->weight_decay);
    }
    if (!in_range(p->momentum, 0.0f, 0.999999f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "optim.momentum = %g: must be in [0, 1)",
                              (double)p->momentum);
    }
    if (LOCO_OPTIM_SGD == p->kind && p->nesterov && 0.0f == p->momentum) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "optim.nesterov needs optim.momentum > 0 (as in torch.optim.SGD)");
    }
    if (!in_range(p->grad_clip, 0.0f, INFINITY)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "optim.grad_clip = %g: must be >= 0 (0 turns clipping off)",
                              (double)p->grad_clip);
    }
    return LOCO_OK;
}

loco_status loco_optim_init(loco_optim *opt, const loco_optim_params *p, size_t n, loco_error *err)
{
    memset(opt, 0, sizeof *opt);
    LOCO_TRY(loco_optim_params_validate(p, err));
    int slots = LOCO_OPTIM_ADAMW == p->kind ? 2 : (p->momentum > 0.0f ? 1 : 0);
    if (slots > 0 && n > 0) {
        opt->state = loco_alloc_aligned((size_t)slots * n * sizeof(float));
        if (NULL == opt->state) {
            return loco_error_set(err, LOCO_ERR_NOMEM,
                                  "out of memory for optimizer state (%d x %zu floats)", slots, n);
        }
    }
    opt->params = *p;
    opt->n = n;
    opt->slots = n > 0 ? slots : 0;
    return LOCO_OK;
}

void loco_optim_free(loco_optim *opt)
{
    if (NULL != opt->cuda) {
        loco_cuda_free(opt->state);
        loco_cuda_decay_free(opt->decay);
    } else {
        free(opt->state);
    }
    memset(opt, 0, sizeof *opt);
}

void loco_optim_reset(loco_optim *opt)
{
    size_t bytes = (size_t)opt->slots * opt->n * sizeof(float);
    if (NULL != opt->state && NULL != opt->cuda) {
        loco_error err = {0};
        if (LOCO_OK != loco_cuda_zero(opt->cuda, opt->state, bytes, &err)) {
            LOCO_ERROR("optimizer reset: %s", err.msg);
        }
    } else if (NULL != opt->state) {
        memset(opt->state, 0, bytes);
    }
    opt->step = 0;
}

float *loco_optim_slot(const loco_optim *opt, int slot)
{
    LOCO_ASSERT(slot >= 0 && slot < opt->slots);
    return opt->state + (size_t)slot * opt->n;
}

const char *loco_optim_slot_name(const loco_optim *opt, int slot)
{
    LOCO_ASSERT(slot >= 0 && slot < opt->slots);
    if (LOCO_OPTIM_ADAMW == opt->params.kind) {
        return 0 == slot ? "exp_avg" : "exp_avg_sq";
    }
    return "momentum_buffer";
}

const char *loco_optim_kind_name(loco_optim_kind kind)
{
    return LOCO_OPTIM_ADAMW == kind ? "adamw" : "sgd";
}

/* ---------------------------------------------------------------------------------------------
 * Gradient norm and clipping */

#define NORM_CHUNK 8192

double loco_grad_norm(const float *grads, size_t n)
{
    /* Fixed chunks, each summed in order, then the chunk sums in order: the same result for
     * any thread count. */
    size_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double total = 0.0;
    double partial[64];
    for (size_t c0 = 0; c0 < chunks; c0 += 64) {
        size_t c1 = c0 + 64 < chunks ? c0 + 64 : chunks;
#pragma omp parallel for schedule(static) if (n >= LOCO_OPTIM_PARALLEL_MIN)
        for (size_t c = c0; c < c1; c++) {
            size_t begin = c * NORM_CHUNK, end = begin + NORM_CHUNK < n ? begin + NORM_CHUNK : n;
            double sum = 0.0;
            for (size_t i = begin; i < end; i++) {
                sum += (double)grads[i] * (double)grads[i];
            }
            partial[c - c0] = sum;
        }
        for (size_t c = c0; c < c1; c++) {
            total += partial[c - c0];
        }
    }
    return sqrt(total);
}

loco_status loco_grad_clip(float *grads, size_t n, float max_norm, double *norm_out,
                           loco_error *err)
{
    double norm = loco_grad_norm(grads, n);
    if (NULL != norm_out) {
        *norm_out = norm;
    }
    if (!isfinite(norm)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE,
                              "gradient norm is %g: a NaN or Inf gradient (skip this step)", norm);
    }
    if (max_norm > 0.0f && norm > max_norm) {
        float scale = (float)((double)max_norm / (norm + 1e-6));
#pragma omp parallel for schedule(static) if (n >= LOCO_OPTIM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) {
            grads[i] *= scale;
        }
    }
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The step */

static void update_range(loco_optim *opt, float *params, const float *grads, float lr, float wd,
                         size_t begin, size_t end)
{
    if (LOCO_OPTIM_ADAMW == opt->params.kind) {
        loco_adamw_update(opt, params, grads, lr, wd, opt->step + 1, begin, end);
    } else {
        loco_sgd_update(opt, params, grads, lr, wd, begin, end);
    }
}

loco_status loco_optim_step(loco_optim *opt, float *params, const float *grads, float lr,
                            const loco_tensor_table *decay_table, loco_error *err)
{
    float wd = opt->params.weight_decay;
    if (NULL == decay_table) {
#pragma omp parallel if (opt->n >= LOCO_OPTIM_PARALLEL_MIN)
        update_range(opt, params, grads, lr, wd, 0, opt->n);
        opt->step++;
        return LOCO_OK;
    }
    if (decay_table->numel != opt->n) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "optimizer over %zu parameters given a tensor table of %zu", opt->n,
                              decay_table->numel);
    }
    for (int i = 0; i < decay_table->count; i++) {
        const loco_tensor *t = &decay_table->tensors[i];
        if (t->offset + t->numel > opt->n) {
            return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                                  "tensor %s [%zu, %zu) lies outside the %zu parameters", t->name,
                                  t->offset, t->offset + t->numel, opt->n);
        }
    }
    /* One parallel region for all tensors; each tensor's elements are split among the team
     * without a barrier between tensors (elementwise updates are independent). */
#pragma omp parallel if (opt->n >= LOCO_OPTIM_PARALLEL_MIN)
    for (int i = 0; i < decay_table->count; i++) {
        const loco_tensor *t = &decay_table->tensors[i];
        update_range(opt, params, grads, lr, t->ndim >= 2 ? wd : 0.0f, t->offset,
                     t->offset + t->numel);
    }
    opt->step++;
    return LOCO_OK;
}
