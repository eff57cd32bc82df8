/* optim/sgd.c — SGD with momentum and Nesterov momentum in torch.optim.SGD's convention
 * (dampening 0), with decoupled weight decay (see optim.h). */
#include "optim/optim_impl.h"

void loco_sgd_update(const loco_optim *opt, float *params, const float *grads, float lr, float wd,
                     size_t begin, size_t end)
{
    const loco_optim_params *p = &opt->params;
    float decay = (float)(1.0 - (double)lr * (double)wd);
    float mu = p->momentum;
    float *buf = opt->slots > 0 ? loco_optim_slot(opt, 0) : NULL; /* momentum_buffer (n) */
    bool nesterov = p->nesterov;
#pragma omp for schedule(static) nowait
    for (size_t i = begin; i < end; i++) {
        float g = grads[i];
        float d = g;
        if (NULL != buf) {
            buf[i] = mu * buf[i] + g;
            d = nesterov ? g + mu * buf[i] : buf[i];
        }
        params[i] = params[i] * decay - lr * d;
    }
}
