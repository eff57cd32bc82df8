/* cuda/layers.cu — the memory-bound layers on the GPU (see layers_cuda.h): encoder, LayerNorm,
 * GELU, column sums (bias and LayerNorm parameter gradients), the fused softmax cross-entropy,
 * fixed-order sums and the bf16 cast. Matmuls are in matmul.cu, attention in attention.cu.
 *
 * Read in this order: encoder, column sums, LayerNorm, GELU, cross-entropy, sums and casts.
 * Rows are handled one warp per row with 16-byte (8 x bf16) accesses; every reduction over rows
 * runs in a fixed order (partial sums per row chunk, then the chunks in order), never through
 * floating-point atomics.
 */
#include "cuda/cuda_impl.h"

#include <math.h>
#include <string.h>

#define ROWS_PER_BLOCK 8 /* one warp per row, 8 warps per block */

/* ---------------------------------------------------------------------------------------------
 * Encoder */

__global__ void encoder_forward_kernel(bf16 *out, const uint16_t *tokens, const bf16 *wte,
                                       const bf16 *wpe, int N, int T, int C)
{
    int vecs = C / 8;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * vecs) {
        return;
    }
    int n = (int)(i / vecs), c = (int)(i % vecs) * 8;
    float a[8], b[8];
    load8(a, wte + (size_t)tokens[n] * C + c);
    load8(b, wpe + (size_t)(n % T) * C + c);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        a[j] += b[j];
    }
    store8(out + (size_t)n * C + c, a);
}

extern "C" loco_status loco_encoder_forward_cuda(loco_bf16 *out, const uint16_t *tokens,
                                                 const loco_bf16 *wte, const loco_bf16 *wpe,
                                                 int B, int T, int C, cudaStream_t stream)
{
    size_t threads = (size_t)B * T * (C / 8);
    encoder_forward_kernel<<<ceil_div(threads, 256), 256, 0, stream>>>(
        as_bf16(out), tokens, as_bf16(wte), as_bf16(wpe), B * T, T, C);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

extern "C" size_t loco_encoder_plan_ints(int N) { return 3 * (size_t)N + 2; }

extern "C" int loco_encoder_plan_build(int *plan, int *counts, const uint16_t *tokens, int N,
                                       int vocab)
{
    memset(counts, 0, (size_t)vocab * sizeof(int));
    for (int n = 0; n < N; n++) {
        counts[tokens[n]]++;
    }
    int U = 0;
    for (int v = 0; v < vocab; v++) {
        U += counts[v] > 0;
    }
    int *start = plan + 1, *group_token = plan + 2 + U, *positions = plan + 2 + 2 * U;
    int u = 0, pos = 0;
    for (int v = 0; v < vocab; v++) {
        if (counts[v] > 0) {
            start[u] = pos;
            group_token[u] = v;
            pos += counts[v];
            counts[v] = start[u]; /* from here on: the group's write cursor */
            u++;
        }
    }
    start[U] = N;
    for (int n = 0; n < N; n++) {
        positions[counts[tokens[n]]++] = n;
    }
    plan[0] = U;
    return U;
}

/* dwte[token] += sum of the group's rows of dout, two channels per thread. */
__global__ void encoder_backward_wte_kernel(float *dwte, const bf16 *dout, const int *plan, int C)
{
    int U = plan[0];
    const int *start = plan + 1, *group_token = plan + 2 + U, *positions = plan + 2 + 2 * U;
    int u = blockIdx.x;
    int c = (blockIdx.y * blockDim.x + threadIdx.x) * 2;
    if (c >= C) {
        return;
    }
    float s0 = 0.0f, s1 = 0.0f;
    for (int i = start[u]; i < start[u + 1]; i++) {
        float2 d = __bfloat1622float2(
            *reinterpret_cast<const __nv_bfloat162 *>(dout + (size_t)positions[i] * C + c));
        s0 += d.x;
        s1 += d.y;
    }
    float *w = dwte + (size_t)group_token[u] * C + c;
    w[0] += s0;
    w[1] += s1;
}

/* dwpe[t] += sum over the batch of dout[b, t]. */
__global__ void encoder_backward_wpe_kernel(float *dwpe, const bf16 *dout, int B, int T, int C)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * (C / 2)) {
        return;
    }
    int t = (int)(i / (C / 2)), c = (int)(i % (C / 2)) * 2;
    float s0 = 0.0f, s1 = 0.0f;
    for (int b = 0; b < B; b++) {
        float2 d = __bfloat1622float2(
            *reinterpret_cast<const __nv_bfloat162 *>(dout + ((size_t)b * T + t) * C + c));
        s0 += d.x;
        s1 += d.y;
    }
    dwpe[(size_t)t * C + c] += s0;
    dwpe[(size_t)t * C + c + 1] += s1;
}

extern "C" loco_status loco_encoder_backward_cuda(float *dwte, float *dwpe, const loco_bf16 *dout,
                                                  const int *plan, int n_groups, int B, int T,
                                                  int C, cudaStream_t stream)
{
    if (n_groups > 0) {
        dim3 grid(n_groups, ceil_div(C / 2, 128));
        encoder_backward_wte_kernel<<<grid, 128, 0, stream>>>(dwte, as_bf16(dout), plan, C);
        CUDA_LAUNCH_TRY();
    }
    encoder_backward_wpe_kernel<<<ceil_div((size_t)T * (C / 2), 256), 256, 0, stream>>>(
        dwpe, as_bf16(dout), B, T, C);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Column sums over rows: sum_n dy[n, c] (bias gradients) and, for LayerNorm, also
 * sum_n dy[n, c] * (x[n, c] - mean[n]) * rstd[n]. A block owns 64 columns (two per lane) of one
 * chunk of rows; its 8 warps take every 8th row and are added in warp order; the chunks' partial
 * sums are then added in chunk order. */

#define COLSUM_COLS 64
#define COLSUM_TARGET_BLOCKS 512

static int colsum_chunks(int N, int C)
{
    int col_blocks = (int)ceil_div(C, COLSUM_COLS);
    int chunks = COLSUM_TARGET_BLOCKS / col_blocks;
    int max_chunks = (int)ceil_div(N, 64); /* at least 64 rows a chunk */
    chunks = chunks < max_chunks ? chunks : max_chunks;
    return chunks < 1 ? 1 : chunks;
}

/* Blocks of the fused LayerNorm backward (each adds its rows' parameter gradients): a fixed
 * number, so the summation order is the same on every GPU. */
#define LN_BWD_BLOCKS 512

static int ln_bwd_blocks(int N)
{
    int rows_blocks = (int)ceil_div(N, ROWS_PER_BLOCK);
    return rows_blocks < LN_BWD_BLOCKS ? rows_blocks : LN_BWD_BLOCKS;
}

extern "C" size_t loco_colsum_scratch_floats(int N, int C)
{
    int chunks = colsum_chunks(N, C), ln = ln_bwd_blocks(N);
    return 2 * (size_t)(chunks > ln ? chunks : ln) * C;
}

template <bool LN>
__global__ void colsum_partial_kernel(float *partial, const bf16 *dy, const bf16 *x,
                                      const float *mean, const float *rstd, int N, int C,
                                      int rows_per_chunk)
{
    __shared__ float sh[2][ROWS_PER_BLOCK][COLSUM_COLS];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int c = blockIdx.x * COLSUM_COLS + lane * 2;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(N, r0 + rows_per_chunk);
    float s0 = 0.0f, s1 = 0.0f, t0 = 0.0f, t1 = 0.0f;
    if (c < C) {
        for (int r = r0 + warp; r < r1; r += ROWS_PER_BLOCK) {
            float2 d = __bfloat1622float2(
                *reinterpret_cast<const __nv_bfloat162 *>(dy + (size_t)r * C + c));
            s0 += d.x;
            s1 += d.y;
            if (LN) {
                float2 xv = __bfloat1622float2(
                    *reinterpret_cast<const __nv_bfloat162 *>(x + (size_t)r * C + c));
                float m = mean[r], s = rstd[r];
                t0 += d.x * ((xv.x - m) * s);
                t1 += d.y * ((xv.y - m) * s);
            }
        }
    }
    sh[0][warp][lane * 2] = s0;
    sh[0][warp][lane * 2 + 1] = s1;
    sh[1][warp][lane * 2] = t0;
    sh[1][warp][lane * 2 + 1] = t1;
    __syncthreads();
    if (warp < (LN ? 2 : 1)) { /* warp q adds quantity q over the 8 warps, in order */
        for (int j = 0; j < 2; j++) {
            int col = lane * 2 + j;
            float acc = 0.0f;
#pragma unroll
            for (int w = 0; w < ROWS_PER_BLOCK; w++) {
                acc += sh[warp][w][col];
            }
            if (c + j < C) {
                partial[((size_t)warp * gridDim.y + blockIdx.y) * C + c + j] = acc;
            }
        }
    }
}

/* out0[c] += sum over chunks of quantity 0; out1 (may be NULL) likewise for quantity 1. A block
 * owns 32 columns; its row y of threads adds chunks y, y + 32, ... in order, then row 0 adds the
 * 32 row sums in order: a fixed order, with enough threads to hide the loads' latency. */
#define FINISH_ROWS 32

__global__ void __launch_bounds__(32 * FINISH_ROWS)
    colsum_finish_kernel(float *out0, float *out1, const float *partial, int chunks, int C)
{
    __shared__ float sh[FINISH_ROWS][33];
    int x = threadIdx.x, y = threadIdx.y;
    int c = blockIdx.x * 32 + x;
    for (int q = 0; q < (NULL != out1 ? 2 : 1); q++) {
        float acc = 0.0f;
        for (int s = y; c < C && s < chunks; s += FINISH_ROWS) {
            acc += partial[((size_t)q * chunks + s) * C + c];
        }
        sh[y][x] = acc;
        __syncthreads();
        if (0 == y && c < C) {
            float total = 0.0f;
            for (int r = 0; r < FINISH_ROWS; r++) {
                total += sh[r][x];
            }
            (0 == q ? out0 : out1)[c] += total;
        }
        __syncthreads();
    }
}

static loco_status colsum_finish(float *out0, float *out1, const float *partial, int chunks, int C,
                                 cudaStream_t stream)
{
    colsum_finish_kernel<<<ceil_div(C, 32), dim3(32, FINISH_ROWS), 0, stream>>>(out0, out1,
                                                                              partial, chunks, C);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

/* dsum (C) += column sums of dy; with x: dnorm (C) += column sums of dy * normalized x. */
static loco_status colsum(float *dsum, float *dnorm, float *scratch, const bf16 *dy, const bf16 *x,
                          const float *mean, const float *rstd, int N, int C, cudaStream_t stream)
{
    int chunks = colsum_chunks(N, C);
    int rows_per_chunk = (int)ceil_div(N, chunks);
    dim3 grid(ceil_div(C, COLSUM_COLS), chunks);
    if (NULL != x) {
        colsum_partial_kernel<true><<<grid, 32 * ROWS_PER_BLOCK, 0, stream>>>(
            scratch, dy, x, mean, rstd, N, C, rows_per_chunk);
    } else {
        colsum_partial_kernel<false><<<grid, 32 * ROWS_PER_BLOCK, 0, stream>>>(
            scratch, dy, NULL, NULL, NULL, N, C, rows_per_chunk);
    }
    CUDA_LAUNCH_TRY();
    return colsum_finish(dsum, dnorm, scratch, chunks, C, stream);
}

/* The bias gradient of a matmul (used by matmul.cu). */
loco_status loco_bias_backward_cuda(float *dbias, float *scratch, const bf16 *dout, int N, int OC,
                                    cudaStream_t stream)
{
    return colsum(dbias, NULL, scratch, dout, NULL, NULL, NULL, N, OC, stream);
}

/* ---------------------------------------------------------------------------------------------
 * LayerNorm */

/* One warp per row, the row's VPL 8-wide vectors per lane kept in registers (C <= 256 VPL): one
 * read of the input. */
template <int VPL>
__global__ void layernorm_forward_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp,
                                         const bf16 *weight, const bf16 *bias, int N, int C)
{
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) {
        return;
    }
    const bf16 *x = inp + (size_t)row * C;
    float v[VPL][8], sum = 0.0f;
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        int c = lane * 8 + k * 256;
#pragma unroll
        for (int j = 0; j < 8; j++) {
            v[k][j] = 0.0f;
        }
        if (c < C) {
            load8(v[k], x + c);
        }
#pragma unroll
        for (int j = 0; j < 8; j++) {
            sum += v[k][j];
        }
    }
    float m = warp_sum(sum) / C;
    float var = 0.0f;
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        if (lane * 8 + k * 256 < C) {
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float d = v[k][j] - m;
                var += d * d;
            }
        }
    }
    float s = rsqrtf(warp_sum(var) / C + 1e-5f);
    bf16 *o = out + (size_t)row * C;
#pragma unroll
    for (int k = 0; k < VPL; k++) {
        int c = lane * 8 + k * 256;
        if (c < C) {
            float w[8], b[8];
            load8(w, weight + c);
            load8(b, bias + c);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                v[k][j] = (v[k][j] - m) * s * w[j] + b[j];
            }
            store8(o + c, v[k]);
        }
    }
    if (0 == lane) {
        mean[row] = m;
        rstd[row] = s;
    }
}

/* Any width: the row read three times (from L1/L2). */
__global__ void layernorm_forward_wide_kernel(bf16 *out, float *mean, float *rstd,
                                              const bf16 *inp, const bf16 *weight,
                                              const bf16 *bias, int N, int C)
{
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) {
        return;
    }
    const bf16 *x = inp + (size_t)row * C;
    float v[8], sum = 0.0f;
    for (int c = lane * 8; c < C; c += 256) {
        load8(v, x + c);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            sum += v[j];
        }
    }
    float m = warp_sum(sum) / C;
    float var = 0.0f;
    for (int c = lane * 8; c < C; c += 256) {
        load8(v, x + c);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float d = v[j] - m;
            var += d * d;
        }
    }
    float s = rsqrtf(warp_sum(var) / C + 1e-5f);
    bf16 *o = out + (size_t)row * C;
    for (int c = lane * 8; c < C; c += 256) {
        float w[8], b[8];
        load8(v, x + c);
        load8(w, weight + c);
        load8(b, bias + c);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            v[j] = (v[j] - m) * s * w[j] + b[j];
        }
        store8(o + c, v);
    }
    if (0 == lane) {
        mean[row] = m;
        rstd[row] = s;
    }
}

extern "C" loco_status loco_layernorm_forward_cuda(loco_bf16 *out, float *mean, float *rstd,
                                                   const loco_bf16 *inp, const loco_bf16 *weight,
                                                   const loco_bf16 *bias, int N, int C,
                                                   cudaStream_t stream)
{
    unsigned int blocks = ceil_div(N, ROWS_PER_BLOCK), threads = 32 * ROWS_PER_BLOCK;
    bf16 *o = as_bf16(out);
    const bf16 *x = as_bf16(inp), *w = as_bf16(weight), *b = as_bf16(bias);
    switch ((C + 255) / 256) {
    case 1:
        layernorm_forward_kernel<1><<<blocks, threads, 0, stream>>>(o, mean, rstd, x, w, b, N, C);
        break;
    case 2:
        layernorm_forward_kernel<2><<<blocks, threads, 0, stream>>>(o, mean, rstd, x, w, b, N, C);
        break;
    case 3:
        layernorm_forward_kernel<3><<<blocks, threads, 0, stream>>>(o, mean, rstd, x, w, b, N, C);
        break;
    case 4:
        layernorm_forward_kernel<4><<<blocks, threads, 0, stream>>>(o, mean, rstd, x, w, b, N, C);
        break;
    default:
        layernorm_forward_wide_kernel<<<blocks, threads, 0, stream>>>(o, mean, rstd, x, w, b, N,
                                                                      C);
        break;
    }
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

/* dinp += rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)), dnorm = dout * weight. */
__global__ void layernorm_backward_rows_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp,
                                               const bf16 *weight, const float *mean,
                                               const float *rstd, int N, int C)
{
    int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) {
        return;
    }
    const bf16 *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
    float m = mean[row], s = rstd[row];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int c = lane * 8; c < C; c += 256) {
        float xv[8], dv[8], w[8];
        load8(xv, x + c);
        load8(dv, dy + c);
        load8(w, weight + c);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float dnorm = dv[j] * w[j];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * ((xv[j] - m) * s);
        }
    }
    dnorm_mean = warp_sum(dnorm_mean) / C;
    dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
    bf16 *dx = dinp + (size_t)row * C;
    for (int c = lane * 8; c < C; c += 256) {
        float xv[8], dv[8], w[8], acc[8];
        load8(xv, x + c);
        load8(dv, dy + c);
        load8(w, weight + c);
        load8(acc, dx + c);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float norm = (xv[j] - m) * s;
            acc[j] += (dv[j] * w[j] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
        store8(dx + c, acc);
    }
}

/* The same rows, with each lane also adding up dbias (sum dy) and dweight (sum dy norm) of its
 * fixed channels (VPL 8-wide vectors: C <= 256 VPL) in registers; the block's warps are then
 * added in warp order and the block's partial sums written for colsum_finish_kernel. One pass
 * over dout and inp instead of two. */
template <int VPL>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK, VPL <= 3 ? 2 : 1)
    layernorm_backward_fused_kernel(bf16 *dinp, float *partial, const bf16 *dout, const bf16 *inp,
                                    const bf16 *weight, const float *mean, const float *rstd,
                                    int N, int C)
{
    __shared__ float sh[ROWS_PER_BLOCK][VPL * 256];
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float dw[VPL][8], db[VPL][8];
#pragma unroll
    for (int v = 0; v < VPL; v++) {
#pragma unroll
        for (int j = 0; j < 8; j++) {
            dw[v][j] = db[v][j] = 0.0f;
        }
    }
    for (int row = blockIdx.x * ROWS_PER_BLOCK + warp; row < N;
         row += gridDim.x * ROWS_PER_BLOCK) {
        const bf16 *x = inp + (size_t)row * C, *dy = dout + (size_t)row * C;
        float m = mean[row], s = rstd[row];
        float xv[VPL][8], dv[VPL][8];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
#pragma unroll
        for (int v = 0; v < VPL; v++) {
            int c = lane * 8 + v * 256;
            if (c < C) {
                float w[8]; /* the weights stay in L1: reloading beats holding them */
                load8(xv[v], x + c);
                load8(dv[v], dy + c);
                load8(w, weight + c);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    xv[v][j] = (xv[v][j] - m) * s; /* the normalized input from here on */
                    float dnorm = dv[v][j] * w[j];
                    dnorm_mean += dnorm;
                    dnorm_norm_mean += dnorm * xv[v][j];
                }
            }
        }
        dnorm_mean = warp_sum(dnorm_mean) / C;
        dnorm_norm_mean = warp_sum(dnorm_norm_mean) / C;
        bf16 *dx = dinp + (size_t)row * C;
#pragma unroll
        for (int v = 0; v < VPL; v++) {
            int c = lane * 8 + v * 256;
            if (c < C) {
                float acc[8], w[8];
                load8(acc, dx + c);
                load8(w, weight + c);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    acc[j] += (dv[v][j] * w[j] - dnorm_mean - xv[v][j] * dnorm_norm_mean) * s;
                    dw[v][j] += dv[v][j] * xv[v][j];
                    db[v][j] += dv[v][j];
                }
                store8(dx + c, acc);
            }
        }
    }
    for (int q = 0; q < 2; q++) { /* quantity 0: dbias, 1: dweight (colsum_finish's order) */
#pragma unroll
        for (int v = 0; v < VPL; v++) {
            int c = lane * 8 + v * 256;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (c + j < C) {
                    sh[warp][c + j] = 0 == q ? db[v][j] : dw[v][j];
                }
            }
        }
        __syncthreads();
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float acc = 0.0f;
#pragma unroll
            for (int w8 = 0; w8 < ROWS_PER_BLOCK; w8++) {
                acc += sh[w8][c];
            }
            partial[((size_t)q * gridDim.x + blockIdx.x) * C + c] = acc;
        }
        __syncthreads();
    }
}

template <int VPL>
static loco_status layernorm_backward_fused(bf16 *dinp, float *dweight, float *dbias,
                                            float *scratch, const bf16 *dout, const bf16 *inp,
                                            const bf16 *weight, const float *mean,
                                            const float *rstd, int N, int C, cudaStream_t stream)
{
    int blocks = ln_bwd_blocks(N);
    layernorm_backward_fused_kernel<VPL><<<blocks, 32 * ROWS_PER_BLOCK, 0, stream>>>(
        dinp, scratch, dout, inp, weight, mean, rstd, N, C);
    CUDA_LAUNCH_TRY();
    return colsum_finish(dbias, dweight, scratch, blocks, C, stream);
}

extern "C" loco_status loco_layernorm_backward_cuda(loco_bf16 *dinp, float *dweight, float *dbias,
                                                    float *scratch, const loco_bf16 *dout,
                                                    const loco_bf16 *inp, const loco_bf16 *weight,
                                                    const float *mean, const float *rstd, int N,
                                                    int C, cudaStream_t stream)
{
    bf16 *di = as_bf16(dinp);
    const bf16 *dy = as_bf16(dout), *x = as_bf16(inp), *w = as_bf16(weight);
    switch ((C + 255) / 256) {
    case 1:
        return layernorm_backward_fused<1>(di, dweight, dbias, scratch, dy, x, w, mean, rstd, N,
                                           C, stream);
    case 2:
        return layernorm_backward_fused<2>(di, dweight, dbias, scratch, dy, x, w, mean, rstd, N,
                                           C, stream);
    case 3:
        return layernorm_backward_fused<3>(di, dweight, dbias, scratch, dy, x, w, mean, rstd, N,
                                           C, stream);
    case 4:
        return layernorm_backward_fused<4>(di, dweight, dbias, scratch, dy, x, w, mean, rstd, N,
                                           C, stream);
    default: /* wider rows: the two-pass form below */
        break;
    }
    layernorm_backward_rows_kernel<<<ceil_div(N, ROWS_PER_BLOCK), 32 * ROWS_PER_BLOCK, 0,
                                     stream>>>(as_bf16(dinp), as_bf16(dout), as_bf16(inp),
                                               as_bf16(weight), mean, rstd, N, C);
    CUDA_LAUNCH_TRY();
    return colsum(dbias, dweight, scratch, as_bf16(dout), as_bf16(inp), mean, rstd, N, C, stream);
}

/* ---------------------------------------------------------------------------------------------
 * GELU, tanh form: gelu(x) = x s, s = 1 / (1 + e^{-2u}), u = sqrt(2/pi) (x + 0.044715 x^3);
 * gelu'(x) = s + x s (1 - s) 2 du/dx with 1 - s = e s. -2u is clamped to +-80 as on the CPU. */

#define GELU_K0 0.7978845608028654f
#define GELU_K1 0.044715f

__device__ __forceinline__ float gelu_sigmoid(float x, float *e)
{
    float m2u = -2.0f * GELU_K0 * (x + GELU_K1 * x * x * x);
    m2u = fminf(fmaxf(m2u, -80.0f), 80.0f);
    *e = __expf(m2u);
    return 1.0f / (1.0f + *e);
}

__global__ void gelu_forward_kernel(bf16 *out, const bf16 *inp, size_t n)
{
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i + 8 <= n) {
        float v[8];
        load8(v, inp + i);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float e;
            v[j] = v[j] * gelu_sigmoid(v[j], &e);
        }
        store8(out + i, v);
    } else {
        for (; i < n; i++) {
            float e, x = __bfloat162float(inp[i]);
            out[i] = __float2bfloat16(x * gelu_sigmoid(x, &e));
        }
    }
}

__global__ void gelu_backward_kernel(bf16 *dinp, const bf16 *inp, const bf16 *dout, size_t n)
{
    size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    size_t end = i + 8 <= n ? i + 8 : n;
    if (i + 8 <= n) {
        float x[8], d[8];
        load8(x, inp + i);
        load8(d, dout + i);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            float e, s = gelu_sigmoid(x[j], &e);
            float du2 = 2.0f * GELU_K0 * (1.0f + 3.0f * GELU_K1 * x[j] * x[j]);
            d[j] *= s + x[j] * s * (e * s) * du2;
        }
        store8(dinp + i, d);
    } else {
        for (; i < end; i++) {
            float e, x = __bfloat162float(inp[i]), s = gelu_sigmoid(x, &e);
            float du2 = 2.0f * GELU_K0 * (1.0f + 3.0f * GELU_K1 * x * x);
            dinp[i] = __float2bfloat16(__bfloat162float(dout[i]) * (s + x * s * (e * s) * du2));
        }
    }
}

extern "C" loco_status loco_gelu_forward_cuda(loco_bf16 *out, const loco_bf16 *inp, size_t n,
                                              cudaStream_t stream)
{
    gelu_forward_kernel<<<ceil_div(ceil_div(n, 8), 256), 256, 0, stream>>>(as_bf16(out),
                                                                           as_bf16(inp), n);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

extern "C" loco_status loco_gelu_backward_cuda(loco_bf16 *dinp, const loco_bf16 *inp,
                                               const loco_bf16 *dout, size_t n,
                                               cudaStream_t stream)
{
    gelu_backward_kernel<<<ceil_div(ceil_div(n, 8), 256), 256, 0, stream>>>(
        as_bf16(dinp), as_bf16(inp), as_bf16(dout), n);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Softmax cross-entropy, one block per row: pass 1 keeps a running (max, sum of exp) per thread
 * and merges them; pass 2 (when dloss != 0) overwrites the row with its gradient. */

#define XENT_THREADS 512

/* Merge (m2, s2) into (m, s): the sum of exp relative to the larger max. */
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2)
{
    float mx = fmaxf(m, m2);
    if (-INFINITY == mx) {
        return;
    }
    s = s * __expf(m - mx) + s2 * __expf(m2 - mx);
    m = mx;
}

template <bool VEC>
__global__ void __launch_bounds__(XENT_THREADS)
    crossentropy_kernel(float *losses, float *lse_out, bf16 *logits, const uint16_t *targets,
                        float dloss, int V)
{
    __shared__ float sh_m[XENT_THREADS / 32], sh_s[XENT_THREADS / 32];
    __shared__ float sh_lse;
    int row = blockIdx.x;
    bf16 *x = logits + (size_t)row * V;
    int target = targets[row];
    float target_logit = 0 == threadIdx.x ? __bfloat162float(x[target]) : 0.0f;
    float m = -INFINITY, s = 0.0f;
    if (VEC) {
        for (int i = threadIdx.x * 8; i < V; i += XENT_THREADS * 8) {
            float v[8], mx = -INFINITY, sum = 0.0f;
            load8(v, x + i);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                mx = fmaxf(mx, v[j]);
            }
#pragma unroll
            for (int j = 0; j < 8; j++) {
                sum += __expf(v[j] - mx);
            }
            lse_merge(m, s, mx, sum);
        }
    } else {
        for (int i = threadIdx.x; i < V; i += XENT_THREADS) {
            lse_merge(m, s, __bfloat162float(x[i]), 1.0f);
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (0 == lane) {
        sh_m[warp] = m;
        sh_s[warp] = s;
    }
    __syncthreads();
    if (0 == threadIdx.x) {
        float bm = sh_m[0], bs = sh_s[0];
        for (int w = 1; w < XENT_THREADS / 32; w++) {
            lse_merge(bm, bs, sh_m[w], sh_s[w]);
        }
        float lse = bm + logf(bs);
        sh_lse = lse;
        losses[row] = lse - target_logit;
        if (NULL != lse_out) {
            lse_out[row] = lse;
        }
    }
    __syncthreads();
    if (0.0f == dloss) {
        return;
    }
    float lse = sh_lse;
    if (VEC) {
        for (int i = threadIdx.x * 8; i < V; i += XENT_THREADS * 8) {
            float v[8];
            load8(v, x + i);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                v[j] = (__expf(v[j] - lse) - (i + j == target ? 1.0f : 0.0f)) * dloss;
            }
            store8(x + i, v);
        }
    } else {
        for (int i = threadIdx.x; i < V; i += XENT_THREADS) {
            float p = __expf(__bfloat162float(x[i]) - lse);
            x[i] = __float2bfloat16((p - (i == target ? 1.0f : 0.0f)) * dloss);
        }
    }
}

extern "C" loco_status loco_crossentropy_forward_cuda(float *losses, float *lse,
                                                      loco_bf16 *logits, const uint16_t *targets,
                                                      float dloss, int N, int V,
                                                      cudaStream_t stream)
{
    if (0 == V % 8) {
        crossentropy_kernel<true><<<N, XENT_THREADS, 0, stream>>>(losses, lse, as_bf16(logits),
                                                                 targets, dloss, V);
    } else {
        crossentropy_kernel<false><<<N, XENT_THREADS, 0, stream>>>(losses, lse, as_bf16(logits),
                                                                  targets, dloss, V);
    }
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Fixed-order sums in double: SUM_BLOCKS blocks stride over the input (float4 where it can), each
 * block reduces its threads in a fixed tree, then one block adds the block sums in order. */

#define SUM_BLOCKS 1024
#define SUM_THREADS 256

extern "C" size_t loco_sum_scratch_doubles(void) { return SUM_BLOCKS; }

__device__ double block_sum_double(double v)
{
    __shared__ double sh[SUM_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    if (0 == threadIdx.x % 32) {
        sh[threadIdx.x / 32] = v;
    }
    __syncthreads();
    double total = 0.0;
    if (0 == threadIdx.x) {
        for (int w = 0; w < SUM_THREADS / 32; w++) {
            total += sh[w];
        }
    }
    return total; /* valid in thread 0 */
}

__global__ void __launch_bounds__(SUM_THREADS)
    sum_partial_kernel(double *partial, const float *x, size_t n, bool squares)
{
    double acc = 0.0;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    bool vec = 0 == ((uintptr_t)x & 15);
    size_t n4 = vec ? n / 4 : 0;
    for (size_t i = tid; i < n4; i += stride) {
        float4 v = reinterpret_cast<const float4 *>(x)[i];
        acc += squares ? (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z +
                             (double)v.w * v.w
                       : (double)v.x + (double)v.y + (double)v.z + (double)v.w;
    }
    for (size_t i = 4 * n4 + tid; i < n; i += stride) {
        double v = x[i];
        acc += squares ? v * v : v;
    }
    double total = block_sum_double(acc);
    if (0 == threadIdx.x) {
        partial[blockIdx.x] = total;
    }
}

__global__ void __launch_bounds__(SUM_THREADS) sum_finish_kernel(double *out, const double *partial)
{
    double acc = 0.0;
    for (int i = threadIdx.x; i < SUM_BLOCKS; i += SUM_THREADS) {
        acc += partial[i];
    }
    double total = block_sum_double(acc);
    if (0 == threadIdx.x) {
        *out = total;
    }
}

extern "C" loco_status loco_sum_cuda(double *out, double *scratch, const float *x, size_t n,
                                     bool squares, cudaStream_t stream)
{
    sum_partial_kernel<<<SUM_BLOCKS, SUM_THREADS, 0, stream>>>(scratch, x, n, squares);
    CUDA_LAUNCH_TRY();
    sum_finish_kernel<<<1, SUM_THREADS, 0, stream>>>(out, scratch);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

__global__ void bf16_from_f32_kernel(bf16 *out, const float *inp, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = __float2bfloat16_rn(inp[i]);
    }
}

extern "C" loco_status loco_bf16_from_f32_cuda(loco_bf16 *out, const float *inp, size_t n,
                                               cudaStream_t stream)
{
    if (n > 0) {
        bf16_from_f32_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(as_bf16(out), inp, n);
        CUDA_LAUNCH_TRY();
    }
    return LOCO_OK;
}
