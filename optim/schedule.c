/* optim/schedule.c — the learning-rate schedule: linear warmup, then constant or cosine decay
 * (see loco_optim_lr in optim.h). */
#include "optim/optim.h"

#include <math.h>

float loco_optim_lr(const loco_optim_params *p, int64_t step)
{
    double lr = p->lr, min_lr = p->min_lr;
    int64_t warmup = p->warmup_steps;
    if (step < 0) {
        step = 0;
    }
    if (step < warmup) {
        return (float)(lr * (double)(step + 1) / (double)warmup);
    }
    if (LOCO_LR_CONSTANT == p->schedule) {
        return (float)lr;
    }
    int64_t decay_steps = (int64_t)p->total_steps - warmup;
    double progress = decay_steps > 0 ? (double)(step - warmup) / (double)decay_steps : 1.0;
    progress = progress > 1.0 ? 1.0 : progress;
    const double pi = 3.14159265358979323846;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(pi * progress)));
}
