/* optim/optim_impl.h — private to optim/: the per-kind update kernels behind loco_optim_step. */
#ifndef LOCO_OPTIM_OPTIM_IMPL_H
#define LOCO_OPTIM_OPTIM_IMPL_H

#include "optim/optim.h"

/* Update elements [begin, end) of params/state with weight decay wd. t = update number (>= 1).
 * Orphaned worksharing (`omp for nowait`): called inside a parallel region, the team splits the
 * range; called outside, the calling thread does it all. */
void loco_adamw_update(const loco_optim *opt, float *params, const float *grads, float lr, float wd,
                       int64_t t, size_t begin, size_t end);
void loco_sgd_update(const loco_optim *opt, float *params, const float *grads, float lr, float wd,
                     size_t begin, size_t end);

/* Ranges shorter than this run on one thread. */
#define LOCO_OPTIM_PARALLEL_MIN 32768

#endif /* LOCO_OPTIM_OPTIM_IMPL_H */
