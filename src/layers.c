/* src/layers.c — CPU forward and backward of every model layer (see layers.h).
 *
 * Read in this order: vector math (exp, GELU's sigmoid), encoder, layernorm, matmul, attention,
 * GELU, cross-entropy. Parallel loops only split independent outputs: row blocks for row-wise
 * work, column chunks for reductions over rows (parameter gradients), so every sum runs in the
 * same order whatever the thread count.
 */
#include "layers.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#define LOCO_LAYERS_AVX2 1
#include <immintrin.h>
#else
#define LOCO_LAYERS_AVX2 0
#endif

/* Columns per work item when a reduction over rows is split by columns. */
#define COLUMN_CHUNK 32
/* Smallest amount of work (elements or multiply-adds) worth a parallel region: below it, thread
 * wake-up costs more than it saves (and oversubscribed machines punish it). */
#define PARALLEL_MIN 32768
/* Query rows per block in causal attention: row block [i0, i1) only needs keys [0, i1). */
#define ATT_BLOCK 48

static int team_size(const loco_gemm_workspace *ws)
{
    int threads = omp_get_max_threads();
    return threads < ws->threads ? threads : ws->threads;
}

/* ---------------------------------------------------------------------------------------------
 * Vector math. exp: Cephes' range reduction x = n ln2 + r and a degree-6 polynomial for e^r,
 * scaled by 2^n through the exponent bits. Scalar and AVX2 versions compute the same formula. */

#define EXP_HI 88.0f
#define EXP_LO -87.3f /* below this e^x is under FLT_MIN: return 0 */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static inline float exp_scalar(float x)
{
    if (x < EXP_LO) {
        return 0.0f;
    }
    x = x > EXP_HI ? EXP_HI : x;
    float fx = floorf(x * EXP_LOG2E + 0.5f);
    float r = x - fx * EXP_C1 - fx * EXP_C2;
    float y = EXP_P0;
    y = y * r + EXP_P1;
    y = y * r + EXP_P2;
    y = y * r + EXP_P3;
    y = y * r + EXP_P4;
    y = y * r + EXP_P5;
    y = y * (r * r) + r + 1.0f;
    union {
        int32_t i;
        float f;
    } pow2 = {.i = ((int32_t)fx + 127) << 23};
    return y * pow2.f;
}

#if LOCO_LAYERS_AVX2
static inline __m256 exp_avx2(__m256 x)
{
    __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(EXP_LO)), _mm256_set1_ps(EXP_HI));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(EXP_LOG2E), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(EXP_C1), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(EXP_C2), r);
    __m256 y = _mm256_set1_ps(EXP_P0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(EXP_P5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(n, 23)));
    return _mm256_andnot_ps(underflow, y);
}
#endif

void loco_vexp(float *out, const float *inp, size_t n)
{
    size_t i = 0;
#if LOCO_LAYERS_AVX2
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(out + i, exp_avx2(_mm256_loadu_ps(inp + i)));
    }
#endif
    for (; i < n; i++) {
        out[i] = exp_scalar(inp[i]);
    }
}

/* x[i] = exp(scale * (x[i] - shift)) for i < n; returns the sum (vector lanes, then in order).
 * x has room for cap >= n floats: while a whole vector fits, the last partial vector is computed
 * whole with its lanes past n set to 0 (whatever they held) instead of a slow scalar tail. */
static float exp_shifted_sum(float *x, int n, int cap, float shift, float scale)
{
    int i = 0;
    float sum = 0.0f;
#if LOCO_LAYERS_AVX2
    __m256 vsum = _mm256_setzero_ps();
    __m256 vshift = _mm256_set1_ps(shift), vscale = _mm256_set1_ps(scale);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (; i < n && i + 8 <= cap; i += 8) {
        __m256 e = exp_avx2(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vshift), vscale));
        __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - i), lane);
        e = _mm256_and_ps(e, _mm256_castsi256_ps(valid));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vsum);
    for (int l = 0; l < 8; l++) {
        sum += lanes[l];
    }
#endif
    for (; i < n; i++) {
        x[i] = exp_scalar((x[i] - shift) * scale);
        sum += x[i];
    }
    return sum;
}

static float row_max(const float *x, int n)
{
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int i = 1; i < n; i++) {
        m = x[i] > m ? x[i] : m;
    }
    return m;
}

/* GELU (tanh form): gelu(x) = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Computed as
 * x s with s = (1 + tanh(u))/2 = 1 / (1 + e^{-2u}), which keeps full relative precision where
 * tanh(u) rounds to -1; gelu'(x) = s + x s (1 - s) 2 du/dx with 1 - s = e^{-2u} s. -2u is clamped
 * to +-80, where s is 0 or 1 to float precision. */
#define GELU_K0 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_K1 0.044715f

/* s = 1 / (1 + e) with e = exp(-2u); 1 - s = e s without cancellation. */
static inline float gelu_sigmoid_scalar(float u, float *e)
{
    float m2u = -2.0f * u;
    m2u = m2u > 80.0f ? 80.0f : (m2u < -80.0f ? -80.0f : m2u);
    *e = exp_scalar(m2u);
    return 1.0f / (1.0f + *e);
}

#if LOCO_LAYERS_AVX2
static inline __m256 gelu_sigmoid_avx2(__m256 u, __m256 *e)
{
    __m256 m2u = _mm256_mul_ps(u, _mm256_set1_ps(-2.0f));
    m2u = _mm256_min_ps(_mm256_max_ps(m2u, _mm256_set1_ps(-80.0f)), _mm256_set1_ps(80.0f));
    __m256 one = _mm256_set1_ps(1.0f);
    *e = exp_avx2(m2u);
    return _mm256_div_ps(one, _mm256_add_ps(one, *e));
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Encoder: token + position embeddings */

void loco_encoder_forward(float *out, const uint16_t *tokens, const float *wte, const float *wpe,
                          int B, int T, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)B * T * C >= PARALLEL_MIN)
    for (int n = 0; n < B * T; n++) {
        const float *te = wte + (size_t)tokens[n] * C;
        const float *pe = wpe + (size_t)(n % T) * C;
        float *o = out + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            o[c] = te[c] + pe[c];
        }
    }
}

void loco_encoder_backward(float *dwte, float *dwpe, const float *dout, const uint16_t *tokens,
                           int B, int T, int C)
{
    int chunks = (C + COLUMN_CHUNK - 1) / COLUMN_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)B * T * C >= PARALLEL_MIN)
    for (int ch = 0; ch < chunks; ch++) {
        int c0 = ch * COLUMN_CHUNK;
        int c1 = c0 + COLUMN_CHUNK < C ? c0 + COLUMN_CHUNK : C;
        for (int n = 0; n < B * T; n++) {
            const float *d = dout + (size_t)n * C;
            float *te = dwte + (size_t)tokens[n] * C;
            float *pe = dwpe + (size_t)(n % T) * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) {
                te[c] += d[c];
                pe[c] += d[c];
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * LayerNorm (eps 1e-5, biased variance, like torch.nn.LayerNorm) */

void loco_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int N, int C)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < C; c++) {
            sum += x[c];
        }
        float m = sum / C;
        float var = 0.0f;
#pragma omp simd reduction(+ : var)
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            var += d * d;
        }
        float s = 1.0f / sqrtf(var / C + 1e-5f);
        float *o = out + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            o[c] = (x[c] - m) * s * weight[c] + bias[c];
        }
        mean[n] = m;
        rstd[n] = s;
    }
}

void loco_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int N, int C)
{
    int chunks = (C + COLUMN_CHUNK - 1) / COLUMN_CHUNK;
#pragma omp parallel if ((size_t)N * C >= PARALLEL_MIN)
    {
        /* dinp, row by row: dx = rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)). */
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C;
            const float *dy = dout + (size_t)n * C;
            float m = mean[n], s = rstd[n];
            float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
            for (int c = 0; c < C; c++) {
                float dnorm = dy[c] * weight[c];
                dnorm_mean += dnorm;
                dnorm_norm_mean += dnorm * (x[c] - m) * s;
            }
            dnorm_mean /= C;
            dnorm_norm_mean /= C;
            float *dx = dinp + (size_t)n * C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float norm = (x[c] - m) * s;
                dx[c] += (dy[c] * weight[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
            }
        }
        /* dweight, dbias: each column chunk sums all rows in order. */
#pragma omp for schedule(static)
        for (int ch = 0; ch < chunks; ch++) {
            int c0 = ch * COLUMN_CHUNK;
            int c1 = c0 + COLUMN_CHUNK < C ? c0 + COLUMN_CHUNK : C;
            float dw[COLUMN_CHUNK] = {0}, db[COLUMN_CHUNK] = {0}; /* in registers */
            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C + c0;
                const float *dy = dout + (size_t)n * C + c0;
                float m = mean[n], s = rstd[n];
                if (c1 - c0 == COLUMN_CHUNK) {
#pragma omp simd
                    for (int c = 0; c < COLUMN_CHUNK; c++) {
                        dw[c] += dy[c] * (x[c] - m) * s;
                        db[c] += dy[c];
                    }
                } else {
                    for (int c = 0; c < c1 - c0; c++) {
                        dw[c] += dy[c] * (x[c] - m) * s;
                        db[c] += dy[c];
                    }
                }
            }
            for (int c = c0; c < c1; c++) {
                dweight[c] += dw[c - c0];
                dbias[c] += db[c - c0];
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Matmul (nn.Linear): out = inp · weight^T + bias */

void loco_matmul_forward(const loco_gemm_workspace *ws, float *out, const float *inp,
                         const float *weight, const float *bias, const float *residual, int N,
                         int C, int OC)
{
    /* A(n, c) = inp[n*C + c]; B(c, o) = weight[o*C + c]; bias and residual join each tile of
     * out while it is in L1. */
    loco_gemm_epilogue epi = {bias, residual, OC, NULL, NULL};
    loco_sgemm_ex(ws, N, OC, C, inp, C, 1, weight, 1, C, out, OC, false, &epi);
}

void loco_matmul_backward(const loco_gemm_workspace *ws, float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight, int N, int C,
                          int OC)
{
    if (NULL != dinp) {
        /* dinp (N, C) = dout (N, OC) · weight (OC, C) */
        loco_sgemm(ws, N, C, OC, dout, OC, 1, weight, C, 1, dinp, C, false);
    }
    /* dweight (OC, C) += dout^T · inp: A(o, n) = dout[n*OC + o] */
    loco_sgemm(ws, OC, C, N, dout, 1, OC, inp, C, 1, dweight, C, true);
    if (NULL != dbias) {
        int chunks = (OC + COLUMN_CHUNK - 1) / COLUMN_CHUNK;
#pragma omp parallel for schedule(static) if ((size_t)N * OC >= PARALLEL_MIN)
        for (int ch = 0; ch < chunks; ch++) {
            int o0 = ch * COLUMN_CHUNK;
            int o1 = o0 + COLUMN_CHUNK < OC ? o0 + COLUMN_CHUNK : OC;
            float sum[COLUMN_CHUNK] = {0}; /* in registers across the rows */
            for (int n = 0; n < N; n++) {
                const float *d = dout + (size_t)n * OC + o0;
                if (o1 - o0 == COLUMN_CHUNK) {
#pragma omp simd
                    for (int o = 0; o < COLUMN_CHUNK; o++) {
                        sum[o] += d[o];
                    }
                } else {
                    for (int o = 0; o < o1 - o0; o++) {
                        sum[o] += d[o];
                    }
                }
            }
            for (int o = o0; o < o1; o++) {
                dbias[o] += sum[o - o0];
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Causal attention. Per (batch, head): S = Q K^T, P = softmax(S / sqrt(hs)) over keys <= query,
 * O = P V — as GEMMs over blocks of ATT_BLOCK query rows, each reading only the keys it can see.
 * Work items are (batch, K/V head) pairs: K and V of the head are packed for the GEMM once and
 * serve every query head of its group and every row block.
 */

/* Per-thread scratch: [dP (T, T) | packed (hs, T) | packed (T, hs)], each part 64-byte aligned
 * when the slice is. */
static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t loco_attention_scratch_floats(int T, int hs)
{
    return round16((size_t)T * T) + round16(loco_gemm_packed_floats(hs, T)) +
           round16(loco_gemm_packed_floats(T, hs));
}

void loco_attention_forward(const loco_gemm_workspace *ws, float *scratch, float *out, float *att,
                            const float *q, int q_stride, const float *k, const float *v,
                            int kv_stride, int B, int T, int NH, int NKV, int hs)
{
    int C = NH * hs;
    int group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) num_threads(team_size(ws)) \
    if ((size_t)B * NH * T * T * hs >= PARALLEL_MIN)
    for (int p = 0; p < B * NKV; p++) {
        int b = p / NKV, g = p % NKV, tid = omp_get_thread_num();
        float *gemm_scratch = loco_gemm_workspace_slice(ws, tid);
        float *mine = scratch + (size_t)tid * loco_attention_scratch_floats(T, hs);
        float *kt_packed = mine + round16((size_t)T * T);                      /* K^T (hs, T) */
        float *v_packed = kt_packed + round16(loco_gemm_packed_floats(hs, T)); /* V (T, hs) */
        const float *kb = k + (size_t)b * T * kv_stride + g * hs; /* (T, hs), stride kv_stride */
        const float *vb = v + (size_t)b * T * kv_stride + g * hs; /* (T, hs), stride kv_stride */
        loco_gemm_pack(hs, T, kb, 1, kv_stride, kt_packed);
        loco_gemm_pack(T, hs, vb, kv_stride, 1, v_packed);
        for (int h = g * group; h < (g + 1) * group; h++) {
            const float *qb = q + (size_t)b * T * q_stride + h * hs; /* (T, hs), stride q_stride */
            float *P = att + ((size_t)b * NH + h) * T * T;           /* (T, T) */
            float *ob = out + (size_t)b * T * C + h * hs;            /* (T, hs), stride C */
            for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
                int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T;
                /* S[i0:i1, 0:i1] = Q[i0:i1] · K[0:i1]^T */
                loco_sgemm_prepacked(gemm_scratch, i1 - i0, i1, hs, qb + (size_t)i0 * q_stride,
                                     q_stride, 1, kt_packed, hs, P + (size_t)i0 * T, T, false);
                for (int t = i0; t < i1; t++) {
                    float *row = P + (size_t)t * T;
                    float m = row_max(row, t + 1);
                    float sum = exp_shifted_sum(row, t + 1, T, m, scale);
                    float inv = 1.0f / sum;
#pragma omp simd
                    for (int j = 0; j <= t; j++) {
                        row[j] *= inv;
                    }
                    memset(row + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
                }
                /* O[i0:i1] = P[i0:i1, 0:i1] · V[0:i1] */
                loco_sgemm_prepacked(gemm_scratch, i1 - i0, hs, i1, P + (size_t)i0 * T, T, 1,
                                     v_packed, T, ob + (size_t)i0 * C, C, false);
            }
        }
    }
}

void loco_attention_backward(const loco_gemm_workspace *ws, float *scratch, float *dq,
                             int dq_stride, float *dk, float *dv, bool zero_dkv, const float *dout,
                             const float *att, const float *q, int q_stride, const float *k,
                             const float *v, int kv_stride, int B, int T, int NH, int NKV, int hs)
{
    int C = NH * hs;
    int group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    /* One work item per (batch, K/V head): it owns dk/dv of that head, so the query heads of a
     * group add into them in a fixed order and no two threads write the same element. */
#pragma omp parallel for schedule(static) num_threads(team_size(ws)) \
    if ((size_t)B * NH * T * T * hs >= PARALLEL_MIN)
    for (int p = 0; p < B * NKV; p++) {
        int b = p / NKV, g = p % NKV, tid = omp_get_thread_num();
        float *gemm_scratch = loco_gemm_workspace_slice(ws, tid);
        float *dP = scratch + (size_t)tid * loco_attention_scratch_floats(T, hs); /* (T, T) */
        float *vt_packed = dP + round16((size_t)T * T);                           /* V^T (hs, T) */
        float *k_packed = vt_packed + round16(loco_gemm_packed_floats(hs, T));    /* K (T, hs) */
        const float *kb = k + (size_t)b * T * kv_stride + g * hs;
        const float *vb = v + (size_t)b * T * kv_stride + g * hs;
        float *dkb = dk + (size_t)b * T * kv_stride + g * hs;
        float *dvb = dv + (size_t)b * T * kv_stride + g * hs;
        loco_gemm_pack(hs, T, vb, 1, kv_stride, vt_packed);
        loco_gemm_pack(T, hs, kb, kv_stride, 1, k_packed);
        for (int t = 0; zero_dkv && t < T; t++) {
            memset(dkb + (size_t)t * kv_stride, 0, (size_t)hs * sizeof(float));
            memset(dvb + (size_t)t * kv_stride, 0, (size_t)hs * sizeof(float));
        }
        for (int h = g * group; h < (g + 1) * group; h++) {
            const float *P = att + ((size_t)b * NH + h) * T * T;
            const float *qb = q + (size_t)b * T * q_stride + h * hs;
            const float *dob = dout + (size_t)b * T * C + h * hs;
            float *dqb = dq + (size_t)b * T * dq_stride + h * hs;
            for (int i0 = 0; i0 < T; i0 += ATT_BLOCK) {
                int i1 = i0 + ATT_BLOCK < T ? i0 + ATT_BLOCK : T;
                float *dPb = dP + (size_t)i0 * T;
                const float *Pb = P + (size_t)i0 * T;
                /* dP[i0:i1, 0:i1] = dO[i0:i1] · V[0:i1]^T */
                loco_sgemm_prepacked(gemm_scratch, i1 - i0, i1, hs, dob + (size_t)i0 * C, C, 1,
                                     vt_packed, hs, dPb, T, false);
                /* dS = P (dP - rowsum(P dP)) * scale; P is 0 above the diagonal, so is dS. */
                for (int t = i0; t < i1; t++) {
                    const float *pr = P + (size_t)t * T;
                    float *dr = dP + (size_t)t * T;
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j <= t; j++) {
                        dot += pr[j] * dr[j];
                    }
#pragma omp simd
                    for (int j = 0; j < i1; j++) {
                        dr[j] = j <= t ? pr[j] * (dr[j] - dot) * scale : 0.0f;
                    }
                }
                /* dQ[i0:i1] = dS[i0:i1, 0:i1] · K[0:i1] */
                loco_sgemm_prepacked(gemm_scratch, i1 - i0, hs, i1, dPb, T, 1, k_packed, T,
                                     dqb + (size_t)i0 * dq_stride, dq_stride, false);
                /* dK[0:i1] += dS[i0:i1, 0:i1]^T · Q[i0:i1]: A(j, t) = dS[t*T + j] */
                loco_sgemm_serial(gemm_scratch, i1, hs, i1 - i0, dPb, 1, T,
                                  qb + (size_t)i0 * q_stride, q_stride, 1, dkb, kv_stride, true);
                /* dV[0:i1] += P[i0:i1, 0:i1]^T · dO[i0:i1] */
                loco_sgemm_serial(gemm_scratch, i1, hs, i1 - i0, Pb, 1, T, dob + (size_t)i0 * C, C,
                                  1, dvb, kv_stride, true);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * GELU */

/* out[i] = gelu(inp[i]) for i < n, on the calling thread. */
static void gelu_forward_range(float *out, const float *inp, size_t n)
{
    size_t i = 0;
#if LOCO_LAYERS_AVX2
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i);
        __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        __m256 u =
            _mm256_mul_ps(_mm256_set1_ps(GELU_K0), _mm256_fmadd_ps(_mm256_set1_ps(GELU_K1), x3, x));
        __m256 e;
        _mm256_storeu_ps(out + i, _mm256_mul_ps(x, gelu_sigmoid_avx2(u, &e)));
    }
#endif
    for (; i < n; i++) {
        float x = inp[i], e;
        out[i] = x * gelu_sigmoid_scalar(GELU_K0 * (x + GELU_K1 * x * x * x), &e);
    }
}

/* dinp[i] = dout[i] gelu'(inp[i]) for i < n (dinp may alias dout), on the calling thread. */
static void gelu_backward_range(float *dinp, const float *inp, const float *dout, size_t n)
{
    size_t i = 0;
#if LOCO_LAYERS_AVX2
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(inp + i);
        __m256 x2 = _mm256_mul_ps(x, x);
        __m256 k0 = _mm256_set1_ps(GELU_K0), k1 = _mm256_set1_ps(GELU_K1);
        __m256 one = _mm256_set1_ps(1.0f);
        __m256 u = _mm256_mul_ps(k0, _mm256_fmadd_ps(_mm256_mul_ps(k1, x2), x, x));
        __m256 e;
        __m256 s = gelu_sigmoid_avx2(u, &e);
        __m256 du2 = _mm256_mul_ps(_mm256_set1_ps(2.0f * GELU_K0),
                                   _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_K1), x2, one));
        /* gelu' = s + x s (1 - s) 2 du/dx */
        __m256 xs = _mm256_mul_ps(x, s);
        __m256 grad = _mm256_fmadd_ps(_mm256_mul_ps(xs, _mm256_mul_ps(e, s)), du2, s);
        _mm256_storeu_ps(dinp + i, _mm256_mul_ps(grad, _mm256_loadu_ps(dout + i)));
    }
#endif
    for (; i < n; i++) {
        float x = inp[i], e;
        float s = gelu_sigmoid_scalar(GELU_K0 * (x + GELU_K1 * x * x * x), &e);
        float du2 = 2.0f * GELU_K0 * (1.0f + 3.0f * GELU_K1 * x * x);
        dinp[i] = (s + x * s * (e * s) * du2) * dout[i];
    }
}

#define GELU_CHUNK 4096

void loco_gelu_forward(float *out, const float *inp, size_t n)
{
    size_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t ch = 0; ch < chunks; ch++) {
        size_t i = ch * GELU_CHUNK;
        gelu_forward_range(out + i, inp + i, i + GELU_CHUNK < n ? GELU_CHUNK : n - i);
    }
}

void loco_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    size_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t ch = 0; ch < chunks; ch++) {
        size_t i = ch * GELU_CHUNK;
        gelu_backward_range(dinp + i, inp + i, dout + i, i + GELU_CHUNK < n ? GELU_CHUNK : n - i);
    }
}

/* Matmul epilogues: a GELU applied to each finished tile of the product while it is in L1. */
typedef struct gelu_tile_ctx {
    float *act;       /* forward: where gelu(tile) goes, (N, OC) */
    const float *pre; /* backward: the GELU's input, (N, C) */
    ptrdiff_t ld;
} gelu_tile_ctx;

static void gelu_forward_tile(void *ctx, float *tile, ptrdiff_t ldc, int row, int col, int mr,
                              int nr)
{
    const gelu_tile_ctx *g = ctx;
    for (int i = 0; i < mr; i++) {
        gelu_forward_range(g->act + (row + i) * g->ld + col, tile + i * ldc, (size_t)nr);
    }
}

static void gelu_backward_tile(void *ctx, float *tile, ptrdiff_t ldc, int row, int col, int mr,
                               int nr)
{
    const gelu_tile_ctx *g = ctx;
    /* the GELU input is read from memory tile by tile: fetch the next tile down (the GEMM
     * visits a column panel's tiles top to bottom) while this one computes */
    for (int i = 0; i < 6; i++) {
        __builtin_prefetch(g->pre + (row + mr + i) * g->ld + col);
    }
    for (int i = 0; i < mr; i++) {
        gelu_backward_range(tile + i * ldc, g->pre + (row + i) * g->ld + col, tile + i * ldc,
                            (size_t)nr);
    }
}

void loco_matmul_gelu_forward(const loco_gemm_workspace *ws, float *out, float *act,
                              const float *inp, const float *weight, const float *bias, int N,
                              int C, int OC)
{
    gelu_tile_ctx ctx = {act, NULL, OC};
    loco_gemm_epilogue epi = {bias, NULL, 0, gelu_forward_tile, &ctx};
    loco_sgemm_ex(ws, N, OC, C, inp, C, 1, weight, 1, C, out, OC, false, &epi);
}

void loco_matmul_backward_gelu(const loco_gemm_workspace *ws, float *dinp, float *dweight,
                               float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *gelu_in, int N, int C, int OC)
{
    gelu_tile_ctx ctx = {NULL, gelu_in, C};
    loco_gemm_epilogue epi = {NULL, NULL, 0, gelu_backward_tile, &ctx};
    /* dinp (N, C) = (dout · weight) * gelu'(gelu_in), tile by tile */
    loco_sgemm_ex(ws, N, C, OC, dout, OC, 1, weight, C, 1, dinp, C, false, &epi);
    loco_matmul_backward(ws, NULL, dweight, dbias, dout, inp, weight, N, C, OC);
}

/* ---------------------------------------------------------------------------------------------
 * Softmax cross-entropy over the vocabulary */

double loco_crossentropy_forward(float *losses, float *lse, const float *logits,
                                 const uint16_t *targets, int N, int V)
{
#pragma omp parallel if ((size_t)N * V >= PARALLEL_MIN)
    {
        float row[256];
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = logits + (size_t)n * V;
            float m = row_max(x, V);
            float sum = 0.0f;
            for (int v0 = 0; v0 < V; v0 += 256) {
                int len = V - v0 < 256 ? V - v0 : 256;
                memcpy(row, x + v0, (size_t)len * sizeof(float));
                sum += exp_shifted_sum(row, len, 256, m, 1.0f);
            }
            lse[n] = m + logf(sum);
            losses[n] = lse[n] - x[targets[n]];
        }
    }
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        total += losses[n];
    }
    return total / N;
}

void loco_crossentropy_backward(float *logits, const float *lse, const uint16_t *targets,
                                float dloss, int N, int V)
{
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        float *x = logits + (size_t)n * V;
        exp_shifted_sum(x, V, V, lse[n], 1.0f);
        x[targets[n]] -= 1.0f;
#pragma omp simd
        for (int v = 0; v < V; v++) {
            x[v] *= dloss;
        }
    }
}
