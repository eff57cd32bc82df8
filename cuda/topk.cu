/* cuda/topk.cu — exact top-k by magnitude on the GPU: over a whole vector (cuda.h's
 * loco_cuda_topk_select) and per DCT chunk (loco_cuda_dct_topk_encode, at the end of the file).
 * Both select the set compress/ defines (the k largest |x|, ties toward the lowest index),
 * indices ascending.
 *
 * Radix select on the 31 magnitude bits of each float (|x|'s bits order like |x|):
 *   pass 1  histogram of bits 30..20 (2048 bins) over every element; the host finds the bin
 *           holding the k-th largest (bins 0x7F8.. are Inf/NaN: refused);
 *   pass 2  histogram of bits 19..10 over the elements whose bits 30..20 are that bin;
 *   pass 3  histogram of bits 9..0 over the elements whose bits 30..10 match: now the k-th
 *           largest key T is exact, with `gt` elements above it and `need` = k - gt taken from
 *           the elements equal to T, lowest indices first;
 *   count   per tile of 4096 elements, how many are > T and == T; an exclusive scan over the
 *           tiles (one block) gives each tile's position in the output;
 *   write   each tile is staged in shared memory, every thread takes 16 consecutive elements,
 *           a block scan of the per-thread counts places each kept element: output position =
 *           (elements > T before it) + min(elements == T before it, need).
 * Five reads of the input, no sort, no floating-point arithmetic: any correct selection gives
 * these very indices, so the codec's message (compress/codec_cuda.c) is the CPU's byte for byte.
 * Histograms use shared-memory atomics (integer counts: order-independent); every pass is
 * queued on the context's stream and the host reads each histogram (8 KB) before the next.
 */
#include "cuda/cuda_impl.h"

#define TOPK_TILE 4096
#define TOPK_THREADS 256
#define TOPK_PER_THREAD (TOPK_TILE / TOPK_THREADS)
#define TOPK_HIST_BLOCKS_PER_SM 4

__device__ __forceinline__ uint32_t mag_key(float v) { return __float_as_uint(v) & 0x7FFFFFFFu; }

/* hist[(key >> bin_shift) & (nbins - 1)] += 1 for each element whose key >> match_shift equals
 * match (match_shift 32: every element). nbins <= 2048, a power of two. */
__global__ void topk_hist_kernel(const float *x, size_t n, int match_shift, uint32_t match,
                                 int bin_shift, uint32_t nbins, uint32_t *hist)
{
    __shared__ uint32_t sh[2048];
    for (uint32_t b = threadIdx.x; b < nbins; b += blockDim.x) {
        sh[b] = 0;
    }
    __syncthreads();
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        uint32_t key = mag_key(x[i]);
        if (match_shift >= 32 || (key >> match_shift) == match) {
            atomicAdd(&sh[(key >> bin_shift) & (nbins - 1)], 1u);
        }
    }
    __syncthreads();
    for (uint32_t b = threadIdx.x; b < nbins; b += blockDim.x) {
        if (0 != sh[b]) {
            atomicAdd(&hist[b], sh[b]);
        }
    }
}

/* counts[tile] = (elements > T, elements == T) of that tile. */
__global__ void topk_count_kernel(const float *x, size_t n, uint32_t T, uint2 *counts)
{
    __shared__ uint32_t gt, eq;
    if (0 == threadIdx.x) {
        gt = eq = 0;
    }
    __syncthreads();
    size_t base = (size_t)blockIdx.x * TOPK_TILE;
    uint32_t my_gt = 0, my_eq = 0;
    for (int j = 0; j < TOPK_PER_THREAD; j++) {
        size_t i = base + (size_t)j * TOPK_THREADS + threadIdx.x;
        if (i < n) {
            uint32_t key = mag_key(x[i]);
            my_gt += key > T;
            my_eq += key == T;
        }
    }
    atomicAdd(&gt, my_gt);
    atomicAdd(&eq, my_eq);
    __syncthreads();
    if (0 == threadIdx.x) {
        counts[blockIdx.x] = make_uint2(gt, eq);
    }
}

/* Exclusive prefix sums of counts (ntiles pairs) in place, by one block of 1024 threads, each
 * summing a run of consecutive tiles. */
__global__ void topk_scan_kernel(uint2 *counts, uint32_t ntiles)
{
    __shared__ uint2 part[1024];
    uint32_t per = (ntiles + blockDim.x - 1) / blockDim.x;
    uint32_t begin = threadIdx.x * per, end = min(begin + per, ntiles);
    uint2 sum = make_uint2(0, 0);
    for (uint32_t t = begin; t < end; t++) {
        sum.x += counts[t].x;
        sum.y += counts[t].y;
    }
    part[threadIdx.x] = sum;
    __syncthreads();
    for (uint32_t off = 1; off < blockDim.x; off <<= 1) { /* inclusive scan of the runs */
        uint2 add = threadIdx.x >= off ? part[threadIdx.x - off] : make_uint2(0, 0);
        __syncthreads();
        part[threadIdx.x].x += add.x;
        part[threadIdx.x].y += add.y;
        __syncthreads();
    }
    uint2 run = threadIdx.x > 0 ? part[threadIdx.x - 1] : make_uint2(0, 0);
    for (uint32_t t = begin; t < end; t++) {
        uint2 c = counts[t];
        counts[t] = run;
        run.x += c.x;
        run.y += c.y;
    }
}

/* Exclusive scan over the block of one packed value per thread (gt count << 16 | eq count;
 * each total <= TOPK_TILE < 65536). */
__device__ __forceinline__ uint32_t block_exclusive_scan(uint32_t v, uint32_t *warp_sums)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint32_t inc = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        uint32_t y = __shfl_up_sync(0xffffffffu, inc, o);
        inc += lane >= o ? y : 0;
    }
    if (31 == lane) {
        warp_sums[warp] = inc;
    }
    __syncthreads();
    uint32_t before = 0;
    for (int w = 0; w < warp; w++) {
        before += warp_sums[w];
    }
    return before + inc - v;
}

/* Element e of a staged tile sits at e + e / 16: one float of padding per thread's run of 16, so
 * the 32 threads of a warp reading their runs hit 32 different banks. */
__device__ __forceinline__ int padded(int e) { return e + (e >> 4); }

/* Write the kept elements of each tile (see the file comment). */
__global__ void topk_write_kernel(const float *x, size_t n, uint32_t T, uint32_t need,
                                  const uint2 *prefix, uint32_t *idx, float *val)
{
    __shared__ float tile[TOPK_TILE + TOPK_TILE / TOPK_PER_THREAD];
    __shared__ uint32_t warp_sums[TOPK_THREADS / 32];
    size_t base = (size_t)blockIdx.x * TOPK_TILE;
    for (int j = 0; j < TOPK_PER_THREAD; j++) {
        int e = j * TOPK_THREADS + (int)threadIdx.x;
        tile[padded(e)] = base + (size_t)e < n ? x[base + (size_t)e] : 0.0f;
    }
    __syncthreads();
    int first = threadIdx.x * TOPK_PER_THREAD;
    const float *run = tile + padded(first);
    uint32_t gt = 0, eq = 0;
    for (int j = 0; j < TOPK_PER_THREAD; j++) {
        if (base + (size_t)(first + j) < n) {
            uint32_t key = mag_key(run[j]);
            gt += key > T;
            eq += key == T;
        }
    }
    uint32_t ex = block_exclusive_scan(gt << 16 | eq, warp_sums);
    uint32_t eq_before = prefix[blockIdx.x].y + (ex & 0xFFFFu);
    uint32_t pos = prefix[blockIdx.x].x + (ex >> 16) + min(eq_before, need);
    for (int j = 0; j < TOPK_PER_THREAD; j++) {
        size_t i = base + (size_t)(first + j);
        if (i >= n) {
            break;
        }
        float v = run[j];
        uint32_t key = mag_key(v);
        bool keep = key > T;
        if (key == T) {
            keep = eq_before < need;
            eq_before++;
        }
        if (keep) {
            idx[pos] = (uint32_t)i;
            val[pos] = v;
            pos++;
        }
    }
}

/* Queue one histogram pass and read the histogram back. */
static loco_status hist_pass(loco_cuda_ctx *ctx, const float *x, size_t n, int match_shift,
                             uint32_t match, int bin_shift, uint32_t nbins, uint32_t *dev_hist,
                             uint32_t *host_hist)
{
    CUDA_TRY(cudaMemsetAsync(dev_hist, 0, nbins * sizeof(uint32_t), ctx->stream));
    size_t want = (n + TOPK_THREADS * 16 - 1) / (TOPK_THREADS * 16);
    size_t cap = (size_t)ctx->sm_count * TOPK_HIST_BLOCKS_PER_SM;
    unsigned int blocks = (unsigned int)(want < 1 ? 1 : want > cap ? cap : want);
    topk_hist_kernel<<<blocks, TOPK_THREADS, 0, ctx->stream>>>(x, n, match_shift, match,
                                                               bin_shift, nbins, dev_hist);
    CUDA_LAUNCH_TRY();
    CUDA_TRY(cudaMemcpyAsync(host_hist, dev_hist, nbins * sizeof(uint32_t),
                             cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    return LOCO_OK;
}

/* The bin holding the k-th largest (k >= 1, counted from the top bin); *above = elements in
 * higher bins. */
static uint32_t find_bin(const uint32_t *hist, uint32_t nbins, size_t k, size_t *above)
{
    size_t acc = 0;
    for (uint32_t b = nbins; b-- > 0;) {
        if (acc + hist[b] >= k) {
            *above = acc;
            return b;
        }
        acc += hist[b];
    }
    *above = acc;
    return 0; /* not reached: the histogram holds at least k elements */
}

static loco_status topk_run(loco_cuda_ctx *ctx, const float *x, size_t n, size_t k,
                            uint32_t *idx, float *val, uint32_t *scratch, loco_error *err)
{
    uint32_t hist[2048];
    uint32_t *dev_hist = scratch;
    uint2 *counts = reinterpret_cast<uint2 *>(scratch + 2048);
    LOCO_TRY(hist_pass(ctx, x, n, 32, 0, 20, 2048, dev_hist, hist));
    for (uint32_t b = 0x7F8; b < 2048; b++) {
        if (0 != hist[b]) {
            return loco_error_set(err, LOCO_ERR_NONFINITE, "GPU top-k: input has NaN or Inf");
        }
    }
    size_t above1 = 0, above2 = 0, above3 = 0;
    uint32_t b1 = find_bin(hist, 2048, k, &above1);
    LOCO_TRY(hist_pass(ctx, x, n, 20, b1, 10, 1024, dev_hist, hist));
    uint32_t b2 = find_bin(hist, 1024, k - above1, &above2);
    uint32_t prefix = b1 << 10 | b2;
    LOCO_TRY(hist_pass(ctx, x, n, 10, prefix, 0, 1024, dev_hist, hist));
    uint32_t b3 = find_bin(hist, 1024, k - above1 - above2, &above3);
    uint32_t T = prefix << 10 | b3;
    uint32_t need = (uint32_t)(k - above1 - above2 - above3);
    unsigned int ntiles = ceil_div(n, TOPK_TILE);
    topk_count_kernel<<<ntiles, TOPK_THREADS, 0, ctx->stream>>>(x, n, T, counts);
    CUDA_LAUNCH_TRY();
    topk_scan_kernel<<<1, 1024, 0, ctx->stream>>>(counts, ntiles);
    CUDA_LAUNCH_TRY();
    topk_write_kernel<<<ntiles, TOPK_THREADS, 0, ctx->stream>>>(x, n, T, need, counts, idx, val);
    CUDA_LAUNCH_TRY();
    CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * DCT-chunk top-k (compress/dct.c's codec; layout in compress/dct.h): one block per chunk of
 * rc x cc <= 64 x 64 coefficients, everything in shared memory:
 *   1. load the chunk; 2. tmp = x_chunk Bc^T and 3. X = Br tmp, each output element a sum in the
 *   CPU's order (j, then i, ascending) of products rounded separately (__fmul_rn/__fadd_rn: no
 *   fused multiply-add, as compress/ is built), so X is the CPU's to the bit; a thread forms a
 *   4 x 4 tile of outputs at once where the chunk's sides are multiples of 4 (each operand
 *   loaded once per 4 products), one output at a time otherwise;
 *   4. the kc-th largest |X| by a radix select over its 31 bits in three shared-memory
 *   histograms (bits 30..20, 19..9, 8..0), each followed by one block scan; 5. the kept
 *   coefficients in local-index order by a block scan (ties to the lower local index); 6. their
 *   values at the chunk's place in the value section, their local indices packed LSB first,
 *   byte by byte, in the chunk's index bytes. */

#define DCT_THREADS 256
#define DCT_MAX_M 4096
#define DCT_PER_THREAD (DCT_MAX_M / DCT_THREADS)

struct dct_layout {
    size_t cols, rc, cc, m, kc, nbc, K, idx_bytes;
    int ib;
};

/* Block-wide sum of one count per thread (all threads call it; *cell is shared scratch). */
__device__ __forceinline__ uint32_t block_count(uint32_t mine, uint32_t *cell)
{
    if (0 == threadIdx.x) {
        *cell = 0;
    }
    __syncthreads();
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        mine += __shfl_xor_sync(0xffffffffu, mine, o);
    }
    if (0 == (threadIdx.x & 31)) {
        atomicAdd(cell, mine);
    }
    __syncthreads();
    uint32_t total = *cell;
    __syncthreads();
    return total;
}

/* C (m x n, leading dimension ldc) = A (m x k, lda) B (k x n, ldb), each output summed over p
 * in order with every product and sum rounded on its own (compress/dct.c's mat_mul_ordered):
 * a 4 x 4 tile per thread where m and n are multiples of 4, else one output per thread. All
 * threads of the block call it; the caller synchronises before reading C. */
__device__ void block_mat_mul_ordered(const float *A, size_t lda, const float *B, size_t ldb,
                                      float *C, size_t ldc, size_t m, size_t n, size_t k)
{
    if (0 == m % 4 && 0 == n % 4) {
        size_t tiles_per_row = n / 4, tiles = (m / 4) * tiles_per_row;
        for (size_t t = threadIdx.x; t < tiles; t += DCT_THREADS) {
            size_t i0 = t / tiles_per_row * 4, j0 = t % tiles_per_row * 4;
            float acc[4][4];
#pragma unroll
            for (int r = 0; r < 4; r++) {
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    acc[r][c] = 0.0f;
                }
            }
            for (size_t p = 0; p < k; p++) {
                float a[4], b[4];
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    a[r] = A[(i0 + (size_t)r) * lda + p];
                    b[r] = B[p * ldb + j0 + (size_t)r];
                }
#pragma unroll
                for (int r = 0; r < 4; r++) {
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        acc[r][c] = __fadd_rn(acc[r][c], __fmul_rn(a[r], b[c]));
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < 4; r++) {
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    C[(i0 + (size_t)r) * ldc + j0 + (size_t)c] = acc[r][c];
                }
            }
        }
        return;
    }
    for (size_t l = threadIdx.x; l < m * n; l += DCT_THREADS) {
        size_t i = l / n, j = l % n;
        float acc = 0.0f;
        for (size_t p = 0; p < k; p++) {
            acc = __fadd_rn(acc, __fmul_rn(A[i * lda + p], B[p * ldb + j]));
        }
        C[i * ldc + j] = acc;
    }
}

/* The kc-th largest key of C[0..m) (keys: |C| bits; ties counted): three passes of a radix
 * select, 11, 11 and 9 bits from the top, each a shared-memory histogram of the keys that
 * match the bits fixed so far and one block scan over the bins from the top. hist holds 2048
 * counts; every thread calls it. */
__device__ uint32_t block_kth_largest_key(const float *C, size_t m, size_t kc, uint32_t *hist,
                                          uint32_t *warp_sums, uint32_t *cell)
{
    const int shifts[3] = {20, 9, 0}, widths[3] = {11, 11, 9};
    uint32_t prefix = 0, fixed = 0; /* the bits chosen so far, and which they are */
    uint32_t need = (uint32_t)kc;   /* rank wanted among the keys that match prefix */
    for (int pass = 0; pass < 3; pass++) {
        uint32_t bins = 1u << widths[pass];
        for (uint32_t b = threadIdx.x; b < bins; b += DCT_THREADS) {
            hist[b] = 0;
        }
        __syncthreads();
        for (size_t l = threadIdx.x; l < m; l += DCT_THREADS) {
            uint32_t key = mag_key(C[l]);
            if ((key & fixed) == prefix) {
                atomicAdd(&hist[(key >> shifts[pass]) & (bins - 1)], 1u);
            }
        }
        __syncthreads();
        /* thread t sums bins top - t per .. top - (t + 1) per + 1 (descending), then a scan in
         * thread order counts the keys in all higher bins */
        uint32_t per = bins / DCT_THREADS, top = bins - 1 - (uint32_t)threadIdx.x * per, mine = 0;
        for (uint32_t b = 0; b < per; b++) {
            mine += hist[top - b];
        }
        uint32_t above = block_exclusive_scan(mine, warp_sums);
        if (above < need && need <= above + mine) { /* the bin of the wanted rank is here */
            for (uint32_t b = 0; b < per; b++) {
                uint32_t c = hist[top - b];
                if (need <= above + c) {
                    *cell = (top - b) | (need - above) << 12;
                    break;
                }
                above += c;
            }
        }
        __syncthreads();
        uint32_t bin = *cell & 0xFFFu;
        need = *cell >> 12;
        prefix |= bin << shifts[pass];
        fixed |= (bins - 1) << shifts[pass];
        __syncthreads(); /* before the next pass clears hist and the scan reuses warp_sums */
    }
    return prefix;
}

__global__ void __launch_bounds__(DCT_THREADS)
    dct_topk_kernel(const float *x, dct_layout g, const float *Br, const float *BcT,
                    uint8_t *payload, int *status)
{
    extern __shared__ float dsm[];
    float *xs = dsm, *tmp = dsm + g.m, *C = dsm + 2 * g.m;
    uint32_t *list = reinterpret_cast<uint32_t *>(dsm + 3 * g.m); /* (kc) kept local indices */
    __shared__ uint32_t cell, warp_sums[DCT_THREADS / 32], hist[2048];
    size_t q = blockIdx.x;
    const float *chunk = x + (q / g.nbc) * g.rc * g.cols + (q % g.nbc) * g.cc;
    int bad = 0;
    for (size_t l = threadIdx.x; l < g.m; l += DCT_THREADS) {
        float v = chunk[(l / g.cc) * g.cols + l % g.cc];
        bad |= !isfinite(v);
        xs[l] = v;
    }
    __syncthreads();
    block_mat_mul_ordered(xs, g.cc, BcT, g.cc, tmp, g.cc, g.rc, g.cc, g.cc); /* x Bc^T, over j */
    __syncthreads();
    block_mat_mul_ordered(Br, g.rc, tmp, g.cc, C, g.cc, g.rc, g.cc, g.rc); /* Br tmp, over i */
    __syncthreads();
    int overflow = 0;
    for (size_t l = threadIdx.x; l < g.m; l += DCT_THREADS) {
        overflow |= !isfinite(C[l]);
    }
    if (0 != block_count(bad, &cell)) {
        if (0 == threadIdx.x) {
            atomicOr(status, 2);
        }
        return;
    }
    if (0 != block_count(overflow, &cell)) {
        if (0 == threadIdx.x) {
            atomicOr(status, 1);
        }
        return;
    }
    /* the kc-th largest magnitude key T: the largest T with count(key >= T) >= kc */
    uint32_t T = block_kth_largest_key(C, g.m, g.kc, hist, warp_sums, &cell);
    uint32_t mine = 0;
    for (size_t l = threadIdx.x; l < g.m; l += DCT_THREADS) {
        mine += mag_key(C[l]) > T;
    }
    uint32_t need = (uint32_t)g.kc - block_count(mine, &cell);
    /* kept coefficients in local-index order: thread t owns [t per, (t + 1) per) */
    size_t per = (g.m + DCT_THREADS - 1) / DCT_THREADS, first = threadIdx.x * per;
    uint32_t gt = 0, eq = 0;
    for (size_t l = first; l < first + per && l < g.m; l++) {
        uint32_t key = mag_key(C[l]);
        gt += key > T;
        eq += key == T;
    }
    uint32_t ex = block_exclusive_scan(gt << 16 | eq, warp_sums);
    uint32_t eq_before = ex & 0xFFFFu;
    uint32_t pos = (ex >> 16) + min(eq_before, need);
    float *values = reinterpret_cast<float *>(payload) + q * g.kc;
    for (size_t l = first; l < first + per && l < g.m; l++) {
        uint32_t key = mag_key(C[l]);
        bool keep = key > T;
        if (key == T) {
            keep = eq_before < need;
            eq_before++;
        }
        if (keep) {
            list[pos] = (uint32_t)l;
            values[pos] = C[l];
            pos++;
        }
    }
    __syncthreads();
    uint8_t *bytes = payload + 4 * g.K + q * g.idx_bytes;
    for (size_t b = threadIdx.x; b < g.idx_bytes; b += DCT_THREADS) {
        uint32_t byte = 0;
        for (int bit = 0; bit < 8; bit++) {
            size_t at = 8 * b + (size_t)bit, t = at / (size_t)g.ib;
            if (t < g.kc) {
                byte |= ((list[t] >> (at % (size_t)g.ib)) & 1u) << bit;
            }
        }
        bytes[b] = (uint8_t)byte;
    }
}

extern "C" loco_status loco_cuda_dct_topk_encode(loco_cuda_ctx *ctx,
                                                 const loco_cuda_dct_params *p, const float *in,
                                                 uint8_t *payload, loco_error *err)
{
    size_t m = p->rc * p->cc;
    if (0 == p->rc || 0 == p->cc || p->rc > 64 || p->cc > 64 || 0 != p->rows % p->rc ||
        0 != p->cols % p->cc || p->kc < 1 || p->kc > m || (m > 1 && p->index_bits < 1) ||
        p->index_bits > 12 || ((size_t)1 << p->index_bits) < m) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "GPU DCT top-k: bad geometry (%zu x %zu in chunks of %zu x %zu, "
                              "%zu kept, %d index bits)",
                              p->rows, p->cols, p->rc, p->cc, p->kc, p->index_bits);
    }
    dct_layout g;
    g.cols = p->cols;
    g.rc = p->rc;
    g.cc = p->cc;
    g.m = m;
    g.kc = p->kc;
    g.nbc = p->cols / p->cc;
    size_t nchunks = (p->rows / p->rc) * g.nbc;
    g.K = nchunks * p->kc;
    g.ib = p->index_bits;
    g.idx_bytes = (p->kc * (size_t)p->index_bits + 7) / 8;
    if (0 == nchunks) {
        return LOCO_OK;
    }
    size_t smem = 4 * m * sizeof(float);
    int *status = reinterpret_cast<int *>(ctx->reduce_scratch); /* stream-ordered scratch */
    cudaError_t e = cudaFuncSetAttribute(dct_topk_kernel,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (cudaSuccess == e) {
        e = cudaMemsetAsync(status, 0, sizeof(int), ctx->stream);
    }
    if (cudaSuccess == e) {
        dct_topk_kernel<<<(unsigned int)nchunks, DCT_THREADS, smem, ctx->stream>>>(
            in, g, p->basis_rows, p->basis_cols_t, payload, status);
        e = cudaGetLastError();
    }
    int host = 0;
    LOCO_TRY(loco_cuda_finish_status(ctx, e, status, &host, "GPU DCT top-k", err));
    if (0 != (host & 2)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "dct_topk encode: input has NaN or Inf");
    }
    if (0 != (host & 1)) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "dct_topk encode: a DCT coefficient overflows fp32 (values too "
                              "large); scale the input down");
    }
    return LOCO_OK;
}

extern "C" size_t loco_cuda_topk_scratch_bytes(size_t n)
{
    return (2048 + 2 * (size_t)ceil_div(n, TOPK_TILE)) * sizeof(uint32_t);
}

extern "C" loco_status loco_cuda_topk_select(loco_cuda_ctx *ctx, const float *x, size_t n,
                                             size_t k, uint32_t *idx, float *val, void *scratch,
                                             loco_error *err)
{
    if (k > n || n > 0xFFFFFFFFu || (k > 0 && (NULL == x || NULL == idx || NULL == val ||
                                               NULL == scratch))) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "GPU top-k: k = %zu of n = %zu (need k <= n < 2^32 and device "
                              "buffers)",
                              k, n);
    }
    if (0 == k) {
        return LOCO_OK;
    }
    loco_status st = topk_run(ctx, x, n, k, idx, val, static_cast<uint32_t *>(scratch), err);
    if (LOCO_ERR_CUDA == st) {
        return loco_cuda_error(err, st, "GPU top-k");
    }
    return st;
}
