/* src/gemm.h — single-precision matrix multiply for the CPU model (private to src/ and tests).
 *
 *     C (M, N) = A (M, K) · B (K, N)        or, with accumulate, C += A · B
 *
 * A and B are strided views, so every transpose the model needs is one call with no copy:
 * A(i, k) = a[i * a_rs + k * a_cs] and B(k, j) = b[k * b_rs + j * b_cs]; C is row-major with row
 * stride ldc. The kernel is BLIS-shaped: B is packed into KC x NR panels, A into MC x KC blocks
 * of MR-row panels, and an MR x NR register-tiled micro-kernel (AVX2/FMA intrinsics when the
 * compiler targets them, a portable C kernel otherwise) accumulates over KC-long slices.
 *
 * Determinism: every element of C is computed by the same sequence of operations (its K range
 * cut into the same KC slices, each summed in order by the same micro-kernel) whatever the
 * number of threads or how the work is split, so results are bit-identical across thread counts.
 *
 * loco_sgemm_naive is the reference the optimized kernel is tested against.
 */
#ifndef LOCO_SRC_GEMM_H
#define LOCO_SRC_GEMM_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>

/* Per-thread packing scratch. One allocation holds `threads` slices. */
typedef struct loco_gemm_workspace {
    float *buf; /* (threads, loco_gemm_workspace_floats()) */
    int threads;
} loco_gemm_workspace;

/* Floats of packing scratch one thread needs. */
size_t loco_gemm_workspace_floats(void);

/* Allocate scratch for up to `threads` threads (>= 1). Returns LOCO_ERR_NOMEM on failure. */
loco_status loco_gemm_workspace_init(loco_gemm_workspace *ws, int threads);
void loco_gemm_workspace_free(loco_gemm_workspace *ws);

/* The scratch slice of thread `t` (0 <= t < ws->threads). */
float *loco_gemm_workspace_slice(const loco_gemm_workspace *ws, int t);

/* C = A·B (accumulate false) or C += A·B (accumulate true), split over up to ws->threads OpenMP
 * threads. M, N, K >= 0; K == 0 sets C to zero (or leaves it, with accumulate). Must not be
 * called from inside an OpenMP parallel region (use loco_sgemm_serial there). */
void loco_sgemm(const loco_gemm_workspace *ws, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c,
                ptrdiff_t ldc, bool accumulate);

/* What to do to C's tiles while they are hot in L1, instead of in separate passes over C:
 * bias (N, added to every row) and residual (M, N, row stride ld; must not alias C) are added after
 * a tile's first K slice (only without accumulate); fn (may be NULL) runs on each finished tile
 * (after the last K slice) with the tile's position (row, col) in the whole C and its size, e.g.
 * to apply an activation or write a second output. */
typedef struct loco_gemm_epilogue {
    const float *bias;
    const float *residual;
    ptrdiff_t ld;
    void (*fn)(void *ctx, float *tile, ptrdiff_t ldc, int row, int col, int mr, int nr);
    void *ctx;
} loco_gemm_epilogue;

/* loco_sgemm with an epilogue (epi may be NULL). */
void loco_sgemm_ex(const loco_gemm_workspace *ws, int M, int N, int K, const float *a,
                   ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs,
                   float *c, ptrdiff_t ldc, bool accumulate, const loco_gemm_epilogue *epi);

/* The same on the calling thread only, with one thread's scratch slice (`scratch` has
 * loco_gemm_workspace_floats() floats). Safe inside a parallel region. */
void loco_sgemm_serial(float *scratch, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                       ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c,
                       ptrdiff_t ldc, bool accumulate);

/* loco_sgemm_serial with the portable C micro-kernel forced (for testing it on AVX2 machines). */
void loco_sgemm_serial_portable(float *scratch, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                                ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs,
                                float *c, ptrdiff_t ldc, bool accumulate);

/* Packing B once for many products (attention reuses a head's K and V across query blocks and
 * heads). loco_gemm_pack stores B (K, N) as loco_gemm_packed_floats(K, N) floats; then
 * loco_sgemm_prepacked computes C (M, N) = (or +=) A (M, K) · B[0:K, 0:N] for any K <= the packed
 * depth packed_k and any N <= the packed width, on the calling thread, with one thread's scratch
 * slice. Results equal loco_sgemm_serial's bit for bit. */
size_t loco_gemm_packed_floats(int K, int N);
void loco_gemm_pack(int K, int N, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *packed);
void loco_sgemm_prepacked(float *scratch, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                          ptrdiff_t a_cs, const float *packed, int packed_k, float *c,
                          ptrdiff_t ldc, bool accumulate);

/* Reference: the textbook triple loop with a double accumulator. */
void loco_sgemm_naive(int M, int N, int K, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs,
                      const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c, ptrdiff_t ldc,
                      bool accumulate);

/* True when the AVX2/FMA micro-kernel was compiled in. */
bool loco_gemm_has_avx2(void);

#endif /* LOCO_SRC_GEMM_H */
