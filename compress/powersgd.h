/* compress/powersgd.h — PowerSGD's building blocks (Vogels et al., NeurIPS 2019;
 * epfml/powersgd), exported so the sync strategy can run the two-allreduce form, and used by
 * the LOCO_CODEC_POWERSGD codec, which runs one power step per worker and ships both factors:
 *
 *   M (rows x cols) = the input;  Q (cols x r) warm-started from the previous step
 *   (first step: N(0,1) from Philox keyed by (seed, tensor) — identical on every worker);
 *   P = M Q;  orthogonalize(P);  Q = M^T P;  message = (P, Q);  decoded = P Q^T.
 * r = min(rank, rows, cols). At r = min(rows, cols) the message reconstructs M exactly (up to
 * rounding). A Q column that becomes zero (M == 0) is redrawn, so the warm start never dies.
 * Payload: P (rows x r, row-major fp32) then Q (cols x r). Biased: use error feedback (ef.h).
 * Distributed form: P_i = M_i Q; allreduce(P); orthogonalize; Q_i = M_i^T P; allreduce(Q);
 * update = P Q^T / N — every worker must start from the same Q (loco_powersgd_init_q).
 */
#ifndef LOCO_COMPRESS_POWERSGD_H
#define LOCO_COMPRESS_POWERSGD_H

#include <stddef.h>
#include <stdint.h>

/* Q (cols x r) ~ N(0, 1) from Philox keyed by (seed, tensor); the same on every worker. */
void loco_powersgd_init_q(float *q, size_t cols, size_t r, uint64_t seed, uint32_t tensor);

/* P (rows x r) = M (rows x cols) Q (cols x r). */
void loco_powersgd_project(const float *m, size_t rows, size_t cols, const float *q, size_t r,
                           float *p);

/* Orthonormalize the columns of P (rows x r) in place (Gram-Schmidt, twice, with double dot
 * products); a column that is (numerically) dependent on earlier ones becomes zero. */
void loco_powersgd_orthogonalize(float *p, size_t rows, size_t r);

/* Q (cols x r) = M^T (cols x rows) P (rows x r). */
void loco_powersgd_back(const float *m, size_t rows, size_t cols, const float *p, size_t r,
                        float *q);

/* out (rows x cols) += scale * P Q^T. */
void loco_powersgd_reconstruct_add(const float *p, const float *q, size_t rows, size_t cols,
                                   size_t r, float scale, float *out);

#endif /* LOCO_COMPRESS_POWERSGD_H */
