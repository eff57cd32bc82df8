/* src/gemm.c — packed, register-tiled single-precision GEMM (see gemm.h).
 *
 * Loop nest (Goto/BLIS): for each NC-wide column block of B, for each KC-deep slice of K, pack
 * that slice of B into NR-wide panels; for each MC-tall row block of A, run the MR x NR
 * micro-kernel over every (MR rows of A, panel of B) pair. The micro-kernel keeps its whole
 * MR x NR tile of C in registers for KC multiply-adds before touching memory. When A's rows are
 * contiguous (a_cs == 1) it broadcasts A's elements straight from the six rows (six streams the
 * prefetchers follow; packing them cost more than it saved); when A is transposed (a_rs == 1) its
 * k-th column elements sit one row stride apart, which aliases in L1, so the MC x KC block is
 * packed into MR-row panels first (a cheap copy of MR contiguous floats per k). One packed B
 * panel (KC x NR) stays in L1.
 *
 * Parallelism: loco_sgemm cuts C into one contiguous stripe per thread (rows when M >= N,
 * columns otherwise) and runs the serial routine on each; each thread packs what it reads. No
 * barrier, no shared scratch, and the arithmetic per element does not depend on the split.
 */
#include "gemm.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#define LOCO_GEMM_AVX2 1
#include <immintrin.h>
#else
#define LOCO_GEMM_AVX2 0
#endif

enum {
    GEMM_MR = 6,   /* micro-tile rows: 6 x 2 accumulators of 8 floats = 12 of the 16 ymm */
    GEMM_NR = 16,  /* micro-tile columns */
    GEMM_KC = 256, /* depth of one packed slice */
    GEMM_MC = 144, /* rows of A packed at once (multiple of MR) */
    GEMM_NC = 512, /* columns of B packed at once (multiple of NR) */
};

/* A micro-kernel: C tile (MR, NR) with row stride ldc = (or +=) A (MR, kc) · packed B (kc, NR),
 * where A's rows start at a_row[0..MR) and step by a_cs along k. */
typedef void (*gemm_kernel_fn)(int kc, const float *const *a_row, ptrdiff_t a_cs, const float *b,
                               float *c, ptrdiff_t ldc, bool accumulate);

size_t loco_gemm_workspace_floats(void)
{
    return (size_t)GEMM_MC * GEMM_KC + (size_t)GEMM_KC * GEMM_NC;
}

loco_status loco_gemm_workspace_init(loco_gemm_workspace *ws, int threads)
{
    LOCO_ASSERT(threads >= 1);
    ws->threads = threads;
    ws->buf = loco_alloc_aligned((size_t)threads * loco_gemm_workspace_floats() * sizeof(float));
    return NULL == ws->buf ? LOCO_ERR_NOMEM : LOCO_OK;
}

void loco_gemm_workspace_free(loco_gemm_workspace *ws)
{
    free(ws->buf);
    ws->buf = NULL;
    ws->threads = 0;
}

float *loco_gemm_workspace_slice(const loco_gemm_workspace *ws, int t)
{
    LOCO_ASSERT(t >= 0 && t < ws->threads);
    return ws->buf + (size_t)t * loco_gemm_workspace_floats();
}

bool loco_gemm_has_avx2(void) { return LOCO_GEMM_AVX2; }

/* ---------------------------------------------------------------------------------------------
 * Micro-kernels */

static void kernel_portable(int kc, const float *const *a_row, ptrdiff_t a_cs,
                            const float *restrict b, float *restrict c, ptrdiff_t ldc,
                            bool accumulate)
{
    float acc[GEMM_MR][GEMM_NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++) {
        for (int i = 0; i < GEMM_MR; i++) {
            float ai = a_row[i][k * a_cs];
            for (int j = 0; j < GEMM_NR; j++) {
                acc[i][j] += ai * b[j];
            }
        }
        b += GEMM_NR;
    }
    for (int i = 0; i < GEMM_MR; i++) {
        float *row = c + i * ldc;
        for (int j = 0; j < GEMM_NR; j++) {
            row[j] = accumulate ? row[j] + acc[i][j] : acc[i][j];
        }
    }
}

#if LOCO_GEMM_AVX2
static void kernel_avx2(int kc, const float *const *a_row, ptrdiff_t a_cs, const float *restrict b,
                        float *restrict c, ptrdiff_t ldc, bool accumulate)
{
    const float *a0 = a_row[0], *a1 = a_row[1], *a2 = a_row[2];
    const float *a3 = a_row[3], *a4 = a_row[4], *a5 = a_row[5];
    ptrdiff_t off = 0;                  /* one induction variable indexes all six rows */
    for (int i = 0; i < GEMM_MR; i++) { /* C is read or written after the loop: fetch it now */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + GEMM_NR - 1), _MM_HINT_T0);
    }
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b);
        __m256 b1 = _mm256_loadu_ps(b + 8);
        __m256 ai = _mm256_broadcast_ss(a0 + off);
        c00 = _mm256_fmadd_ps(ai, b0, c00);
        c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a1 + off);
        c10 = _mm256_fmadd_ps(ai, b0, c10);
        c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a2 + off);
        c20 = _mm256_fmadd_ps(ai, b0, c20);
        c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a3 + off);
        c30 = _mm256_fmadd_ps(ai, b0, c30);
        c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a4 + off);
        c40 = _mm256_fmadd_ps(ai, b0, c40);
        c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a5 + off);
        c50 = _mm256_fmadd_ps(ai, b0, c50);
        c51 = _mm256_fmadd_ps(ai, b1, c51);
        off += a_cs;
        b += GEMM_NR;
    }
    __m256 rows[GEMM_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21},
                               {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < GEMM_MR; i++) {
        float *row = c + i * ldc;
        __m256 lo = rows[i][0], hi = rows[i][1];
        if (accumulate) {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
        }
        _mm256_storeu_ps(row, lo);
        _mm256_storeu_ps(row + 8, hi);
    }
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Packing B: zero-padded panels, so the micro-kernel never needs a bounds check on columns. */

/* Pack A rows [0, mc) x depth [0, kc) into panels of MR rows: out[p][k][i] = A(p*MR + i, k),
 * rows past mc repeat the last row. Used when A is stored transposed (a_rs == 1). */
static void pack_a(int mc, int kc, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs,
                   float *restrict out)
{
    for (int ir = 0; ir < mc; ir += GEMM_MR) {
        int mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
        float *panel = out + (size_t)ir * kc; /* ir / MR panels of kc * MR */
        if (GEMM_MR == mr && 1 == a_rs) {     /* a transposed A: MR contiguous floats per k */
            for (int k = 0; k < kc; k++) {
                memcpy(panel + k * GEMM_MR, a + ir + k * a_cs, GEMM_MR * sizeof(float));
            }
            continue;
        }
        for (int k = 0; k < kc; k++) {
            for (int i = 0; i < GEMM_MR; i++) {
                panel[k * GEMM_MR + i] = a[(ir + (i < mr ? i : mr - 1)) * a_rs + k * a_cs];
            }
        }
    }
}

#if LOCO_GEMM_AVX2
/* dst[r][c] = src[c][r] for an 8 x 8 block; rows of src are src_ld apart, of dst dst_ld apart. */
static void transpose8x8(const float *src, ptrdiff_t src_ld, float *dst, ptrdiff_t dst_ld)
{
    __m256 r0 = _mm256_loadu_ps(src + 0 * src_ld), r1 = _mm256_loadu_ps(src + 1 * src_ld);
    __m256 r2 = _mm256_loadu_ps(src + 2 * src_ld), r3 = _mm256_loadu_ps(src + 3 * src_ld);
    __m256 r4 = _mm256_loadu_ps(src + 4 * src_ld), r5 = _mm256_loadu_ps(src + 5 * src_ld);
    __m256 r6 = _mm256_loadu_ps(src + 6 * src_ld), r7 = _mm256_loadu_ps(src + 7 * src_ld);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * dst_ld, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * dst_ld, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * dst_ld, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * dst_ld, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * dst_ld, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * dst_ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* Pack B depth [0, kc) x columns [0, nc) into panels of NR columns: out[p][k][j] = B(k, p*NR+j). */
static void pack_b(int kc, int nc, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs,
                   float *restrict out)
{
    for (int jr = 0; jr < nc; jr += GEMM_NR) {
        int nr = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;
        float *panel = out + (size_t)jr * kc; /* jr / NR panels of kc * NR */
        if (nr < GEMM_NR) {
            memset(panel, 0, (size_t)kc * GEMM_NR * sizeof(float));
        }
        if (1 == b_cs && GEMM_NR == nr) {
            for (int k = 0; k < kc; k++) { /* fixed-size copy: vector moves, not rep movs */
                memcpy(panel + k * GEMM_NR, b + k * b_rs + jr, GEMM_NR * sizeof(float));
            }
        } else if (1 == b_cs) {
            for (int k = 0; k < kc; k++) {
                for (int j = 0; j < nr; j++) {
                    panel[k * GEMM_NR + j] = b[k * b_rs + jr + j];
                }
            }
        } else if (1 == b_rs && GEMM_NR == nr) { /* B transposed: columns contiguous along k */
            int k = 0;
#if LOCO_GEMM_AVX2
            for (; k + 8 <= kc; k += 8) {
                for (int j = 0; j < GEMM_NR; j += 8) {
                    transpose8x8(b + (jr + j) * b_cs + k, b_cs, panel + k * GEMM_NR + j, GEMM_NR);
                }
            }
#endif
            for (; k < kc; k++) {
                for (int j = 0; j < GEMM_NR; j++) {
                    panel[k * GEMM_NR + j] = b[(jr + j) * b_cs + k];
                }
            }
        } else {
            for (int j = 0; j < nr; j++) {
                const float *col = b + (jr + j) * b_cs;
                for (int k = 0; k < kc; k++) {
                    panel[k * GEMM_NR + j] = col[k * b_rs];
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Blocked driver */

/* Tile (mr, nr) at row r0, column c0 of the whole C += bias[c0..] + residual[r0.., c0..]. One
 * loop per case: a conditional load of a NULL pointer inside a vectorised loop becomes a masked
 * load from address 0, which is legal but takes a microcode assist on every iteration on AMD. */
static void add_to_tile(float *ct, ptrdiff_t ldc, int mr, int nr, const loco_gemm_epilogue *epi,
                        int r0, int c0)
{
    const float *bias = NULL != epi->bias ? epi->bias + c0 : NULL;
    for (int i = 0; NULL != epi->residual && i < GEMM_MR; i++) { /* the next tile down */
        __builtin_prefetch(epi->residual + (r0 + GEMM_MR + i) * epi->ld + c0);
    }
    for (int i = 0; i < mr; i++) {
        float *row = ct + i * ldc;
        if (NULL != epi->residual) {
            const float *res = epi->residual + (r0 + i) * epi->ld + c0;
            for (int j = 0; j < nr; j++) {
                row[j] += res[j];
            }
        }
        if (NULL != bias) {
            for (int j = 0; j < nr; j++) {
                row[j] += bias[j];
            }
        }
    }
}

/* What happens to each tile after its kernel call: the addends after the first K slice, the
 * epilogue function after the last. */
static void finish_tile(float *ct, ptrdiff_t ldc, int mr, int nr, const loco_gemm_epilogue *epi,
                        bool first, bool last, int r0, int c0)
{
    if (NULL == epi) {
        return;
    }
    if (first && (NULL != epi->bias || NULL != epi->residual)) {
        add_to_tile(ct, ldc, mr, nr, epi, r0, c0);
    }
    if (last && NULL != epi->fn) {
        epi->fn(epi->ctx, ct, ldc, r0, c0, mr, nr);
    }
}

/* Where a thread's part of C sits in the whole product (the epilogue works in whole-C
 * coordinates), and which K slice this is. */
typedef struct slice_pos {
    int row0, col0;
    bool first, last;
} slice_pos;

/* One KC-deep slice: C (M, nc) (+)= A (M, kc) · B, B already packed in NR-column panels, panel p
 * at packed_b + p * panel_stride with row k at + k * NR. */
static void gemm_slice(gemm_kernel_fn kernel, float *packed_a, int M, int nc, int kc,
                       const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float *packed_b,
                       size_t panel_stride, float *c, ptrdiff_t ldc, bool acc,
                       const loco_gemm_epilogue *epi, slice_pos pos)
{
    bool pack = 1 != a_cs;
    float edge[GEMM_MR * GEMM_NR] __attribute__((aligned(64)));
    for (int ic = 0; ic < M; ic += GEMM_MC) {
        int mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
        if (pack) {
            pack_a(mc, kc, a + ic * a_rs, a_rs, a_cs, packed_a);
        }
        /* where row i of the block starts, and the step along k */
        const float *a_base = pack ? packed_a : a + ic * a_rs;
        ptrdiff_t row_step = pack ? 1 : a_rs, k_step = pack ? GEMM_MR : a_cs;
        for (int jr = 0; jr < nc; jr += GEMM_NR) {
            int nr = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;
            const float *pb = packed_b + (size_t)(jr / GEMM_NR) * panel_stride;
            for (int ir = 0; ir < mc; ir += GEMM_MR) {
                int mr = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
                /* rows past the edge read the last valid row; their results are discarded */
                const float *rows[GEMM_MR];
                const float *panel = pack ? a_base + (size_t)ir * kc : a_base + ir * a_rs;
                for (int i = 0; i < GEMM_MR; i++) {
                    rows[i] = panel + (pack ? i : (i < mr ? i : mr - 1)) * row_step;
                }
                float *ct = c + (ic + ir) * ldc + jr;
                if (GEMM_MR == mr && GEMM_NR == nr) {
                    kernel(kc, rows, k_step, pb, ct, ldc, acc);
                } else { /* edge tile: compute the full tile aside, copy the valid part */
                    kernel(kc, rows, k_step, pb, edge, GEMM_NR, false);
                    for (int i = 0; i < mr; i++) {
                        for (int j = 0; j < nr; j++) {
                            float v = edge[i * GEMM_NR + j];
                            ct[i * ldc + j] = acc ? ct[i * ldc + j] + v : v;
                        }
                    }
                }
                /* the tile is hot in L1 */
                finish_tile(ct, ldc, mr, nr, epi, pos.first, pos.last, pos.row0 + ic + ir,
                            pos.col0 + jr);
            }
        }
    }
}

/* M, N or K is 0: C = 0 (+ epilogue), or C unchanged with accumulate. Returns true then. */
static bool gemm_trivial(int M, int N, int K, float *c, ptrdiff_t ldc, bool accumulate,
                         const loco_gemm_epilogue *epi, int row0, int col0)
{
    if (M > 0 && N > 0 && K <= 0) {
        for (int i = 0; i < M && !accumulate; i++) {
            memset(c + i * ldc, 0, (size_t)N * sizeof(float));
        }
        finish_tile(c, ldc, M, N, epi, true, true, row0, col0);
    }
    return M <= 0 || N <= 0 || K <= 0;
}

/* C (M, N) at (row0, col0) of the whole product = or += A · B on one thread. */
static void gemm_blocked(gemm_kernel_fn kernel, float *scratch, int M, int N, int K, const float *a,
                         ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs,
                         ptrdiff_t b_cs, float *c, ptrdiff_t ldc, bool accumulate,
                         const loco_gemm_epilogue *epi, int row0, int col0)
{
    if (gemm_trivial(M, N, K, c, ldc, accumulate, epi, row0, col0)) {
        return;
    }
    float *packed_b = scratch;                             /* (KC, NC) */
    float *packed_a = scratch + (size_t)GEMM_KC * GEMM_NC; /* (MC, KC), transposed A only */
    for (int jc = 0; jc < N; jc += GEMM_NC) {
        int nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
        for (int pc = 0; pc < K; pc += GEMM_KC) {
            int kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
            slice_pos pos = {row0, col0 + jc, 0 == pc, pc + kc == K};
            pack_b(kc, nc, b + pc * b_rs + jc * b_cs, b_rs, b_cs, packed_b);
            gemm_slice(kernel, packed_a, M, nc, kc, a + pc * a_cs, a_rs, a_cs, packed_b,
                       (size_t)kc * GEMM_NR, c + jc, ldc, accumulate || pc > 0, epi, pos);
        }
    }
}

static gemm_kernel_fn best_kernel(void)
{
#if LOCO_GEMM_AVX2
    return kernel_avx2;
#else
    return kernel_portable;
#endif
}

void loco_sgemm_serial(float *scratch, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                       ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c,
                       ptrdiff_t ldc, bool accumulate)
{
    gemm_blocked(best_kernel(), scratch, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate,
                 NULL, 0, 0);
}

void loco_sgemm_serial_portable(float *scratch, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                                ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs,
                                float *c, ptrdiff_t ldc, bool accumulate)
{
    gemm_blocked(kernel_portable, scratch, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc,
                 accumulate, NULL, 0, 0);
}

/* Split C into one stripe per thread (rows when M >= N, else columns) and run each. */
static void gemm_parallel(const loco_gemm_workspace *ws, int M, int N, int K, const float *a,
                          ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs,
                          ptrdiff_t b_cs, float *c, ptrdiff_t ldc, bool accumulate,
                          const loco_gemm_epilogue *epi)
{
    LOCO_ASSERT(NULL == epi || !accumulate || (NULL == epi->bias && NULL == epi->residual));
    int threads = omp_get_max_threads() < ws->threads ? omp_get_max_threads() : ws->threads;
    double flops = 2.0 * M * N * K;
    if (threads <= 1 || flops < 1e6) {
        gemm_blocked(best_kernel(), ws->buf, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc,
                     accumulate, epi, 0, 0);
        return;
    }
    bool split_rows = M >= N;
    int extent = split_rows ? M : N;
    int unit = split_rows ? GEMM_MR : GEMM_NR;
    int chunk = (extent + threads - 1) / threads;
    chunk = (chunk + unit - 1) / unit * unit;
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num();
        int lo = t * chunk;
        int hi = lo + chunk < extent ? lo + chunk : extent;
        float *scratch = loco_gemm_workspace_slice(ws, t);
        if (lo < hi && split_rows) {
            gemm_blocked(best_kernel(), scratch, hi - lo, N, K, a + lo * a_rs, a_rs, a_cs, b, b_rs,
                         b_cs, c + lo * ldc, ldc, accumulate, epi, lo, 0);
        } else if (lo < hi) {
            gemm_blocked(best_kernel(), scratch, M, hi - lo, K, a, a_rs, a_cs, b + lo * b_cs, b_rs,
                         b_cs, c + lo, ldc, accumulate, epi, 0, lo);
        }
    }
}

void loco_sgemm(const loco_gemm_workspace *ws, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c,
                ptrdiff_t ldc, bool accumulate)
{
    gemm_parallel(ws, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, NULL);
}

void loco_sgemm_ex(const loco_gemm_workspace *ws, int M, int N, int K, const float *a,
                   ptrdiff_t a_rs, ptrdiff_t a_cs, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs,
                   float *c, ptrdiff_t ldc, bool accumulate, const loco_gemm_epilogue *epi)
{
    gemm_parallel(ws, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, accumulate, epi);
}

size_t loco_gemm_packed_floats(int K, int N)
{
    return (size_t)K * (size_t)((N + GEMM_NR - 1) / GEMM_NR * GEMM_NR);
}

void loco_gemm_pack(int K, int N, const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *packed)
{
    pack_b(K, N, b, b_rs, b_cs, packed);
}

void loco_sgemm_prepacked(float *scratch, int M, int N, int K, const float *a, ptrdiff_t a_rs,
                          ptrdiff_t a_cs, const float *packed, int packed_k, float *c,
                          ptrdiff_t ldc, bool accumulate)
{
    LOCO_ASSERT(K <= packed_k);
    if (gemm_trivial(M, N, K, c, ldc, accumulate, NULL, 0, 0)) {
        return;
    }
    float *packed_a = scratch + (size_t)GEMM_KC * GEMM_NC;
    for (int pc = 0; pc < K; pc += GEMM_KC) {
        int kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
        slice_pos pos = {0, 0, 0 == pc, pc + kc == K};
        gemm_slice(best_kernel(), packed_a, M, N, kc, a + pc * a_cs, a_rs, a_cs,
                   packed + (size_t)pc * GEMM_NR, (size_t)packed_k * GEMM_NR, c, ldc,
                   accumulate || pc > 0, NULL, pos);
    }
}

void loco_sgemm_naive(int M, int N, int K, const float *a, ptrdiff_t a_rs, ptrdiff_t a_cs,
                      const float *b, ptrdiff_t b_rs, ptrdiff_t b_cs, float *c, ptrdiff_t ldc,
                      bool accumulate)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double sum = accumulate ? c[i * ldc + j] : 0.0;
            for (int k = 0; k < K; k++) {
                sum += (double)a[i * a_rs + k * a_cs] * (double)b[k * b_rs + j * b_cs];
            }
            c[i * ldc + j] = (float)sum;
        }
    }
}
