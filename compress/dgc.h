/* compress/dgc.h — Deep Gradient Compression helpers (Lin et al., ICLR 2018; the codec is
 * LOCO_CODEC_DGC in codec.h).
 *
 * Per step and tensor, with momentum m (dgc_momentum) kept in the codec state:
 *   g   = g * min(1, dgc_clip_norm / ||g||)        local gradient clipping (when > 0)
 *   u   = m u + g ;  v = v + u                      momentum correction (accumulate velocity)
 *   thr = the ceil(rho * s)-th largest |v| over a strided sample of s = n * dgc_sample elements
 *         (random start from Philox (seed, step, rank, tensor));
 *   kept = { i : |v_i| >= thr }; while |kept| < 0.8 k (at most 10 times): thr *= 0.8;
 *   if |kept| > 1.3 k: kept = exact top-k of v (topk.h)
 *   send (i, v_i) for i in kept; then v_i = u_i = 0 for i in kept (momentum factor masking).
 * The velocity v is DGC's own error feedback: do not wrap DGC in compress/ef.h as well.
 * Warm-up (dgc_warmup_steps W > 0): density 25%, 6.25%, 1.5625%, 0.390625% over four equal
 * stages of the first W steps (never below the configured density), then rho.
 */
#ifndef LOCO_COMPRESS_DGC_H
#define LOCO_COMPRESS_DGC_H

#include "compress/codec.h"

/* The density DGC uses at `step` (warm-up schedule applied). */
float loco_dgc_density(const loco_codec_params *params, uint64_t step);

#endif /* LOCO_COMPRESS_DGC_H */
