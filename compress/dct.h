/* compress/dct.h — DeMo's chunked DCT (Peng, Quesnelle, Kingma 2024; bloc97/DeMo), used by the
 * LOCO_CODEC_DCT_TOPK codec and by the demo sync strategy.
 *
 * A rows x cols tensor is cut into chunks of rc x cc, where rc = loco_dct_chunk(rows) and
 * cc = loco_dct_chunk(cols) are the largest divisors <= 64 of each dimension (DeMo's
 * _get_smaller_split: 2048 -> 64, 50304 -> 64, 50257 -> 29, 1000 -> 50, 96 -> 48, 7 -> 7,
 * prime 67 -> 1). Vectors are 1 x n. Each chunk gets the orthonormal 2-D DCT-II
 *   X[u][v] = a_u a_v sum_ij x[i][j] cos(pi (2i+1) u / 2rc) cos(pi (2j+1) v / 2cc),
 *   a_0 = sqrt(1/m), a_u = sqrt(2/m).
 * Coefficients are laid out like the tensor: chunk (a, b)'s coefficient (u, v) sits at row
 * a rc + u, column b cc + v.
 *
 * Codec payload: per chunk (row-major chunk order) the kc = min(chunk_topk, rc cc) largest |X|
 * (ties to the lower local index u cc + v) as fp32 values in ascending local index; then per
 * chunk the local indices, ceil(log2(rc cc)) bits each, packed LSB-first and byte-aligned per
 * chunk. Decoding adds scale * IDCT(sparse chunk) to the output.
 */
#ifndef LOCO_COMPRESS_DCT_H
#define LOCO_COMPRESS_DCT_H

#include "base/status.h"

#include <stddef.h>
#include <stdint.h>

/* Largest divisor of d that is <= 64 (1 for d == 0). */
size_t loco_dct_chunk(size_t d);

/* Orthonormal DCT-II matrix of size m (m <= 64): B[u * m + i] = a_u cos(pi (2i+1) u / 2m). */
void loco_dct_basis(size_t m, float *B);

/* Reference 1-D DCT-II of x[0..m) in double, straight from the definition (tests). */
void loco_dct_naive(const float *x, size_t m, double *X);

/* Chunked forward / inverse transform of a whole rows x cols tensor (x and X do not alias). */
void loco_dct_forward(const float *x, size_t rows, size_t cols, float *X);
void loco_dct_inverse(const float *X, size_t rows, size_t cols, float *x);

/* Add a DCT top-k message's coefficients (times scale) into coef (rows x cols, the layout
 * above) and, if count is not NULL, 1 into count at every coefficient the message carries — what
 * DeMo's scatter-mean needs. Validates the message like loco_codec_decode_add (same statuses);
 * on error nothing is written. */
loco_status loco_dct_add_coefficients(const uint8_t *msg, size_t len, size_t rows, size_t cols,
                                      float scale, float *coef, float *count, loco_error *err);

#endif /* LOCO_COMPRESS_DCT_H */
