/* compress/lgreco.h — adaptive per-tensor compression (L-GreCo, Markov et al., MLSys 2024,
 * arXiv 2210.17357).
 *
 * Every `period` steps the strategy measures, for each tensor l and each candidate setting c of
 * the codec's main knob (bits, density, rank or chunk_topk), the squared error
 * err[l][c] = ||x_l - D(E_c(x_l))||^2 on the (error-feedback-corrected) update and the message
 * size bytes[l][c] (loco_lgreco_measure). loco_lgreco_solve then picks one candidate per tensor
 * minimising sum bytes subject to sum err <= budget; the usual budget is the error of the
 * uniform default setting, which is therefore always feasible.
 *
 * The solver is a dynamic program over tensors that keeps, after each tensor, the Pareto front
 * of (bytes, error) partial sums (dominated partial choices can never lead to a better
 * solution), discarding partial sums over the budget. It is exact — it equals brute force —
 * while the front stays below LOCO_LGRECO_FRONT_MAX entries; beyond that the front is thinned
 * by keeping the smallest size per error bin (the paper's discretised error axis), which may
 * cost optimality but never feasibility: errors are summed exactly, so the result never exceeds
 * the budget.
 */
#ifndef LOCO_COMPRESS_LGRECO_H
#define LOCO_COMPRESS_LGRECO_H

#include "compress/codec.h"

#define LOCO_LGRECO_FRONT_MAX 65536

/* One candidate's measured cost on one tensor. */
typedef struct loco_lgreco_option {
    double error;  /* squared L2 error of decode(encode(x)) */
    size_t bytes;  /* message bytes */
} loco_lgreco_option;

/* The params of `base` with its main knob set to `value`: bits (maxmin, qsgd), density (topk,
 * dgc, randk), rank (powersgd), chunk_topk (dct_topk). LOCO_ERR_CONFIG when the codec has no
 * such knob or the value is out of range. */
loco_status loco_lgreco_vary(const loco_codec_params *base, double value,
                             loco_codec_params *out, loco_error *err);

/* Measure C candidate params on tensor x (rows x cols): opts[c] = {error, bytes}. The codecs are
 * run with fresh state, so stateful codecs (DGC, PowerSGD) are measured on one cold step. */
loco_status loco_lgreco_measure(const loco_codec_params *cands, int C, const float *x,
                                size_t rows, size_t cols, const loco_codec_ctx *ctx,
                                loco_lgreco_option *opts, loco_error *err);

/* Choose choice[l] in 0..C-1 for each of L tensors (opts is L x C, row-major) minimising the
 * total bytes with total error <= budget (ties: smaller error). *total_bytes / *total_error get
 * the result (either may be NULL). LOCO_ERR_RANGE when no assignment fits the budget. */
loco_status loco_lgreco_solve(const loco_lgreco_option *opts, int L, int C, double budget,
                              int *choice, size_t *total_bytes, double *total_error,
                              loco_error *err);

/* Exhaustive search over all C^L assignments (L <= 10), the reference for tests. */
loco_status loco_lgreco_brute_force(const loco_lgreco_option *opts, int L, int C, double budget,
                                    int *choice, size_t *total_bytes, double *total_error);

/* Re-plan at this step? (every `period` steps, starting at step 0; period 0 = never). */
static inline bool loco_lgreco_due(uint64_t step, uint64_t period)
{
    return period > 0 && 0 == step % period;
}

#endif /* LOCO_COMPRESS_LGRECO_H */
