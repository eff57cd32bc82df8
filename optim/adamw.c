/* optim/adamw.c — AdamW (Loshchilov & Hutter) in torch.optim.AdamW's operation order. */
#include "optim/optim_impl.h"

#include <math.h>

void loco_adamw_update(const loco_optim *opt, float *params, const float *grads, float lr, float wd,
                       int64_t t, size_t begin, size_t end)
{
    const loco_optim_params *p = &opt->params;
    float *m = loco_optim_slot(opt, 0); /* exp_avg (n) */
    float *v = loco_optim_slot(opt, 1); /* exp_avg_sq (n) */
    /* Scalars as torch forms them: Python doubles, rounded to float at the tensor op. */
    float decay = (float)(1.0 - (double)lr * (double)wd);
    float b1 = p->beta1, b2 = p->beta2;
    float one_minus_b1 = (float)(1.0 - (double)p->beta1);
    float one_minus_b2 = (float)(1.0 - (double)p->beta2);
    double bias_correction1 = 1.0 - pow((double)p->beta1, (double)t);
    double bias_correction2 = 1.0 - pow((double)p->beta2, (double)t);
    float step_size = (float)((double)lr / bias_correction1);
    float bc2_sqrt = (float)sqrt(bias_correction2);
    float eps = p->eps;
#pragma omp for schedule(static) nowait
    for (size_t i = begin; i < end; i++) {
        float g = grads[i];
        params[i] *= decay;
        m[i] = m[i] * b1 + one_minus_b1 * g;
        v[i] = v[i] * b2 + one_minus_b2 * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        params[i] -= step_size * (m[i] / denom);
    }
}
