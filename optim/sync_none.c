/* optim/sync_none.c — strategy "none": one process, no communication. Each step clips the
 * local gradient and applies the inner optimizer (what `loco train` did before strategies). */
#include "optim/sync_impl.h"

static loco_status none_step(loco_sync *s, const loco_sync_step_in *in, loco_sync_step_out *out,
                             loco_error *err)
{
    return sync_inner_update(s, in, in->grads_finite, out, err);
}

static bool none_uses_params(const loco_sync *s, int64_t step)
{
    (void)s;
    (void)step;
    return false; /* with inner_done nothing touches the replica */
}

const sync_ops loco_sync_none_ops = {.step = none_step, .uses_params = none_uses_params};
