/* cuda/attention.cu — causal attention with grouped K/V heads on the GPU (see layers_cuda.h).
 *
 * Flash attention (Dao et al., FlashAttention-2): a block of 64 query rows streams the key
 * blocks it can see through shared memory, keeps a running softmax (max and sum) per row and
 * accumulates P·V in registers; only the output and one log-sum-exp per row reach device memory,
 * never a (T, T) matrix. Products use the tensor cores' mma.m16n8k16 (bf16 in, fp32
 * accumulate), fed by ldmatrix from XOR-swizzled tiles (16-byte chunk c of row r lives at chunk
 * c ^ (r & 7): conflict-free for ldmatrix's 8-row reads), loaded with cp.async two tiles deep.
 *
 * Backward runs in two kernels so that nothing needs atomics and every sum has a fixed order:
 *   dkv: a block owns 64 keys of one K/V head and walks every query block (of every query head
 *        of the group) that sees them, accumulating dK and dV in registers;
 *   dq:  a block owns 64 query rows and walks their key blocks, accumulating dQ.
 * Both recompute P from the saved log-sum-exp; D = rowsum(dO * O) is precomputed.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16): with g = lane / 4 and q = lane % 4, A (16 x 16,
 * row-major) holds rows g, g+8 x columns 2q, 2q+1, 2q+8, 2q+9; B (16 x 8) holds k rows 2q, 2q+1,
 * 2q+8, 2q+9 of column g; C/D (16 x 8) holds rows g, g+8 x columns 2q, 2q+1. An accumulator pair
 * of n-tiles therefore *is* the A fragment of the next product (P·V, dS·K, ...) after packing to
 * bf16.
 *
 * Head sizes 64 and 128 take these kernels; any other size the plain kernels at the end (one
 * warp per row, fp32 throughout), which also serve as the tests' on-device reference.
 */
#include "cuda/cuda_impl.h"

#include <math.h>

#define FLASH_THREADS 128 /* 4 warps, 16 rows each */
#define BLOCK_ROWS 64     /* query rows (forward, dq) or keys (dkv) per block */
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/* ---------------------------------------------------------------------------------------------
 * PTX helpers */

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, zero-filled when !valid. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(valid ? 16 : 0));
}

/* 4 bytes global -> shared, zero-filled when !valid. */
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(valid ? 4 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* d += a · b (16 x 16 by 16 x 8, bf16 in, fp32 accumulate). */
__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats to a bf16 pair: lo in the low half (the lower column). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* The A fragment of keys/queries 16j..16j+15 from accumulators of n-tiles 2j and 2j+1. */
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float lo[4], const float hi[4])
{
    a[0] = pack_bf16(lo[0], lo[1]);
    a[1] = pack_bf16(lo[2], lo[3]);
    a[2] = pack_bf16(hi[0], hi[1]);
    a[3] = pack_bf16(hi[2], hi[3]);
}

/* ---------------------------------------------------------------------------------------------
 * Swizzled tiles: ROWS x HS bf16, row r's 16-byte chunk c at chunk c ^ (r & 7). */

template <int HS>
__device__ __forceinline__ uint32_t tile_addr(const bf16 *tile, int row, int chunk)
{
    return smem_addr(tile) + (uint32_t)(row * HS * 2 + ((chunk ^ (row & 7)) << 4));
}

/* Queue the copy of rows [0, ROWS) of a (rows, HS) slice with row stride `stride` (elements);
 * rows >= valid_rows are zero-filled. */
template <int HS, int ROWS>
__device__ __forceinline__ void tile_load(bf16 *tile, const bf16 *src, int stride, int valid_rows)
{
    constexpr int CHUNKS = HS / 8;
    for (int i = threadIdx.x; i < ROWS * CHUNKS; i += FLASH_THREADS) {
        int r = i / CHUNKS, c = i % CHUNKS;
        bool valid = r < valid_rows;
        const bf16 *g = valid ? src + (size_t)r * stride + c * 8 : src;
        cp_async16(reinterpret_cast<char *>(tile) + r * HS * 2 + ((c ^ (r & 7)) << 4), g, valid);
    }
}

/* A fragments (16 rows from row0, all HS columns as HS/16 k-steps) of a row-major tile. */
template <int HS>
__device__ __forceinline__ void load_a_frags(uint32_t f[HS / 16][4], const bf16 *tile, int row0)
{
    int lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
        ldmatrix_x4(f[kk], tile_addr<HS>(tile, row0 + (lane % 16), kk * 2 + lane / 16));
    }
}

/* acc (16 MT x 8 NT) += A (16 MT x HS: MT m-tiles of fragments) · tile^T, tile rows = the n
 * index (keys or queries): B(k = d, n = row) read untransposed, each B fragment feeding MT mma. */
template <int HS, int NT, int MT>
__device__ __forceinline__ void mma_a_tileT_mt(float acc[MT][NT][4],
                                               const uint32_t a[MT][HS / 16][4], const bf16 *tile)
{
    int lane = threadIdx.x % 32;
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t r[4];
            ldmatrix_x4(r, tile_addr<HS>(tile, np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                         kk * 2 + ((lane >> 3) & 1)));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16(acc[mt][2 * np], a[mt][kk], r[0], r[1]);
                mma_bf16(acc[mt][2 * np + 1], a[mt][kk], r[2], r[3]);
            }
        }
    }
}

/* acc (16 MT x HS) += P (16 MT x 16 KS, accumulator layout: n-tiles of 8) · tile (16 KS rows,
 * HS): B(k = row, n = d) read transposed, each B fragment feeding MT mma. */
template <int HS, int KS, int MT>
__device__ __forceinline__ void mma_acc_tile_mt(float acc[MT][HS / 8][4],
                                                const float p[MT][2 * KS][4], const bf16 *tile)
{
    int lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < KS; j++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            acc_to_a(a[mt], p[mt][2 * j], p[mt][2 * j + 1]);
        }
#pragma unroll
        for (int dp = 0; dp < HS / 16; dp++) {
            uint32_t r[4];
            ldmatrix_x4_trans(r, tile_addr<HS>(tile, j * 16 + (lane & 7) + (((lane >> 3) & 1) << 3),
                                               dp * 2 + (lane >> 4)));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16(acc[mt][2 * dp], a[mt], r[0], r[1]);
                mma_bf16(acc[mt][2 * dp + 1], a[mt], r[2], r[3]);
            }
        }
    }
}

/* One m-tile (16 rows) per warp: the backward kernels'. */
template <int HS, int NT>
__device__ __forceinline__ void mma_a_tileT(float acc[NT][4], const uint32_t a[HS / 16][4],
                                            const bf16 *tile)
{
    mma_a_tileT_mt<HS, NT, 1>(reinterpret_cast<float(*)[NT][4]>(acc),
                              reinterpret_cast<const uint32_t(*)[HS / 16][4]>(a), tile);
}

template <int HS, int KS>
__device__ __forceinline__ void mma_acc_tile(float acc[HS / 8][4], const float p[2 * KS][4],
                                             const bf16 *tile)
{
    mma_acc_tile_mt<HS, KS, 1>(reinterpret_cast<float(*)[HS / 8][4]>(acc),
                               reinterpret_cast<const float(*)[2 * KS][4]>(p), tile);
}

/* Row (0 or 1 -> g or g+8) and column offsets of accumulator element i of n-tile nt. */
__device__ __forceinline__ int acc_row(int i) { return (threadIdx.x % 32) / 4 + (i >= 2 ? 8 : 0); }
__device__ __forceinline__ int acc_col(int nt, int i)
{
    return nt * 8 + (threadIdx.x % 4) * 2 + (i & 1);
}

/* Store a (16 x HS) fp32 accumulator times `scale` as bf16 rows row0.. of dst (row stride
 * `stride`); rows >= T are skipped; with add, dst += instead of =. */
template <int HS>
__device__ __forceinline__ void store_rows(bf16 *dst, int stride, const float acc[HS / 8][4],
                                           float scale, int row0, int T, bool add)
{
    int lane = threadIdx.x % 32;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        int row = row0 + lane / 4 + 8 * half;
        if (row >= T) {
            continue;
        }
#pragma unroll
        for (int dt = 0; dt < HS / 8; dt++) {
            __nv_bfloat162 *p = reinterpret_cast<__nv_bfloat162 *>(dst + (size_t)row * stride +
                                                                   dt * 8 + (lane % 4) * 2);
            float x = acc[dt][2 * half] * scale, y = acc[dt][2 * half + 1] * scale;
            if (add) {
                float2 old = __bfloat1622float2(*p);
                x += old.x;
                y += old.y;
            }
            *p = __floats2bfloat162_rn(x, y);
        }
    }
}

/* The key/value pipeline of the forward and dq kernels: queue key block kb + 1 (BN keys) into the
 * other buffer, then wait until block kb (in buffer kb & 1) has arrived for every thread. */
template <int HS, int BN = BLOCK_ROWS>
__device__ __forceinline__ void kv_pipeline(bf16 *sK, bf16 *sV, const bf16 *kg, const bf16 *vg,
                                            int kv_stride, int T, int kb, int n_kblocks)
{
    int other = (kb & 1) ^ 1;
    if (kb + 1 < n_kblocks) {
        int k1 = (kb + 1) * BN;
        tile_load<HS, BN>(sK + other * BN * HS, kg + (size_t)k1 * kv_stride, kv_stride, T - k1);
        tile_load<HS, BN>(sV + other * BN * HS, vg + (size_t)k1 * kv_stride, kv_stride, T - k1);
        cp_async_commit();
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    __syncthreads();
}

/* ---------------------------------------------------------------------------------------------
 * Forward */

/* A block of 64 MT query rows, MT m-tiles of 16 rows per warp: each K/V fragment read from
 * shared memory feeds MT products. */
template <int HS, int MT>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_forward_kernel(bf16 *out, float *lse, const bf16 *q, int q_stride, const bf16 *k,
                         const bf16 *v, int kv_stride, int T, int NH, int NKV, float scale_log2)
{
    constexpr int BM = BLOCK_ROWS * MT, BN = BLOCK_ROWS;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem); /* (BM, HS) */
    bf16 *sK = sQ + BM * HS;                    /* 2 x (BN, HS) */
    bf16 *sV = sK + 2 * BN * HS;                /* 2 x (BN, HS) */

    int qblock = gridDim.x - 1 - blockIdx.x; /* the longest rows first */
    int b = blockIdx.y / NH, h = blockIdx.y % NH, g = h / (NH / NKV);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int q0 = qblock * BM;
    int C = NH * HS;
    const bf16 *qg = q + ((size_t)b * T + q0) * q_stride + h * HS;
    const bf16 *kg = k + (size_t)b * T * kv_stride + g * HS;
    const bf16 *vg = v + (size_t)b * T * kv_stride + g * HS;
    int q_end = q0 + BM < T ? q0 + BM : T;
    int n_kblocks = (q_end + BN - 1) / BN; /* the key blocks some row of the block sees */

    tile_load<HS, BM>(sQ, qg, q_stride, T - q0);
    tile_load<HS, BN>(sK, kg, kv_stride, T);
    tile_load<HS, BN>(sV, vg, kv_stride, T);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    int row0 = warp * 16 * MT; /* this warp's first row in the block */
    uint32_t qf[MT][HS / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        load_a_frags<HS>(qf[mt], sQ, row0 + mt * 16);
    }

    float o[MT][HS / 8][4];
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int dt = 0; dt < HS / 8; dt++) {
            o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.0f;
        }
        row_max[mt][0] = row_max[mt][1] = -INFINITY;
        row_sum[mt][0] = row_sum[mt][1] = 0.0f;
    }

    for (int kb = 0; kb < n_kblocks; kb++) {
        int buf = kb & 1;
        kv_pipeline<HS>(sK, sV, kg, vg, kv_stride, T, kb, n_kblocks);
        const bf16 *cK = sK + buf * BN * HS, *cV = sV + buf * BN * HS;

        float s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++) {
                s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
            }
        }
        mma_a_tileT_mt<HS, BN / 8, MT>(s, qf, cK);

        int k0 = kb * BN;
        bool edge = k0 + BN - 1 > q0 || k0 + BN > T; /* some key is in a row's future or past T */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    int row = q0 + row0 + mt * 16 + acc_row(i), col = k0 + acc_col(nt, i);
                    s[mt][nt][i] = edge && (col > row || col >= T) ? -INFINITY
                                                                   : s[mt][nt][i] * scale_log2;
                }
            }
        }
        /* Running softmax per row (half 0: row g, half 1: row g + 8), in log2 units. */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int half = 0; half < 2; half++) {
                float mx = -INFINITY;
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++) {
                    mx = fmaxf(mx, fmaxf(s[mt][nt][2 * half], s[mt][nt][2 * half + 1]));
                }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float m_new = fmaxf(row_max[mt][half], mx);
                float m_use = -INFINITY == m_new ? 0.0f : m_new;
                float corr = exp2f(row_max[mt][half] - m_use);
                float sum = 0.0f;
#pragma unroll
                for (int nt = 0; nt < BN / 8; nt++) {
                    s[mt][nt][2 * half] = exp2f(s[mt][nt][2 * half] - m_use);
                    s[mt][nt][2 * half + 1] = exp2f(s[mt][nt][2 * half + 1] - m_use);
                    sum += s[mt][nt][2 * half] + s[mt][nt][2 * half + 1];
                }
                sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                row_sum[mt][half] = row_sum[mt][half] * corr + sum;
                row_max[mt][half] = m_new;
#pragma unroll
                for (int dt = 0; dt < HS / 8; dt++) {
                    o[mt][dt][2 * half] *= corr;
                    o[mt][dt][2 * half + 1] *= corr;
                }
            }
        }
        mma_acc_tile_mt<HS, BN / 16, MT>(o, s, cV);
        __syncthreads(); /* the next iteration's loads overwrite the other buffer */
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float inv[2] = {1.0f / row_sum[mt][0], 1.0f / row_sum[mt][1]};
#pragma unroll
        for (int dt = 0; dt < HS / 8; dt++) {
            o[mt][dt][0] *= inv[0];
            o[mt][dt][1] *= inv[0];
            o[mt][dt][2] *= inv[1];
            o[mt][dt][3] *= inv[1];
        }
        int r0 = q0 + row0 + mt * 16;
        store_rows<HS>(out + (size_t)b * T * C + h * HS, C, o[mt], 1.0f, r0, T, false);
        if (0 == lane % 4) {
#pragma unroll
            for (int half = 0; half < 2; half++) {
                int row = r0 + lane / 4 + 8 * half;
                if (row < T) {
                    lse[((size_t)b * NH + h) * T + row] =
                        (row_max[mt][half] + log2f(row_sum[mt][half])) * LN2;
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Backward: D = rowsum(dO * O) per (b, h, t) */

__global__ void attention_dvec_kernel(float *D, const bf16 *dout, const bf16 *out, int B, int T,
                                      int NH, int hs)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; /* (b, t, h) */
    int lane = threadIdx.x % 32;
    if (row >= (size_t)B * T * NH) {
        return;
    }
    const bf16 *dy = dout + row * hs, *y = out + row * hs; /* (N, NH * hs) row-major */
    float acc = 0.0f;
    for (int d = lane; d < hs; d += 32) {
        acc += __bfloat162float(dy[d]) * __bfloat162float(y[d]);
    }
    acc = warp_sum(acc);
    if (0 == lane) {
        size_t bt = row / NH;
        int h = (int)(row % NH);
        size_t b = bt / T, t = bt % T;
        D[(b * NH + h) * T + t] = acc;
    }
}

/* dq: a block owns 64 MT query rows of one head (MT m-tiles of 16 rows per warp) and walks the
 * key blocks of BN keys they see. */
template <int HS, int MT, int BN>
__global__ void __launch_bounds__(FLASH_THREADS)
    flash_backward_dq_kernel(bf16 *dq, int dq_stride, const bf16 *dout, const float *lse,
                             const float *D, const bf16 *q, int q_stride, const bf16 *k,
                             const bf16 *v, int kv_stride, int T, int NH, int NKV, float scale,
                             float scale_log2)
{
    constexpr int BM = BLOCK_ROWS * MT;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(smem); /* (BM, HS) */
    bf16 *sdO = sQ + BM * HS;                   /* (BM, HS) */
    bf16 *sK = sdO + BM * HS;                   /* 2 x (BN, HS) */
    bf16 *sV = sK + 2 * BN * HS;                /* 2 x (BN, HS) */

    int qblock = gridDim.x - 1 - blockIdx.x;
    int b = blockIdx.y / NH, h = blockIdx.y % NH, g = h / (NH / NKV);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int q0 = qblock * BM;
    int C = NH * HS;
    const bf16 *kg = k + (size_t)b * T * kv_stride + g * HS;
    const bf16 *vg = v + (size_t)b * T * kv_stride + g * HS;
    int q_end = q0 + BM < T ? q0 + BM : T;
    int n_kblocks = (q_end + BN - 1) / BN;
    int row0 = warp * 16 * MT; /* this warp's first row in the block */

    tile_load<HS, BM>(sQ, q + ((size_t)b * T + q0) * q_stride + h * HS, q_stride, T - q0);
    tile_load<HS, BM>(sdO, dout + ((size_t)b * T + q0) * C + h * HS, C, T - q0);
    tile_load<HS, BN>(sK, kg, kv_stride, T);
    tile_load<HS, BN>(sV, vg, kv_stride, T);
    cp_async_commit();

    /* Row statistics of this thread's rows: log-sum-exp (log2 units) and D. */
    float row_lse[MT][2], row_D[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int half = 0; half < 2; half++) {
            int row = q0 + row0 + mt * 16 + lane / 4 + 8 * half;
            size_t at = ((size_t)b * NH + h) * T + (row < T ? row : 0);
            row_lse[mt][half] = lse[at] * LOG2E;
            row_D[mt][half] = D[at];
        }
    }
    cp_async_wait<0>();
    __syncthreads();
    uint32_t qf[MT][HS / 16][4], dof[MT][HS / 16][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        load_a_frags<HS>(qf[mt], sQ, row0 + mt * 16);
        load_a_frags<HS>(dof[mt], sdO, row0 + mt * 16);
    }

    float acc[MT][HS / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int dt = 0; dt < HS / 8; dt++) {
            acc[mt][dt][0] = acc[mt][dt][1] = acc[mt][dt][2] = acc[mt][dt][3] = 0.0f;
        }
    }
    for (int kb = 0; kb < n_kblocks; kb++) {
        int buf = kb & 1;
        kv_pipeline<HS, BN>(sK, sV, kg, vg, kv_stride, T, kb, n_kblocks);
        const bf16 *cK = sK + buf * BN * HS, *cV = sV + buf * BN * HS;

        float s[MT][BN / 8][4], dp[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++) {
                s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.0f;
                dp[mt][nt][0] = dp[mt][nt][1] = dp[mt][nt][2] = dp[mt][nt][3] = 0.0f;
            }
        }
        mma_a_tileT_mt<HS, BN / 8, MT>(s, qf, cK);   /* S = Q K^T */
        mma_a_tileT_mt<HS, BN / 8, MT>(dp, dof, cV); /* dP = dO V^T */
        int k0 = kb * BN;
        bool edge = k0 + BN - 1 > q0 || k0 + BN > T; /* some key in a row's future or past T */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    int half = i >> 1;
                    int row = q0 + row0 + mt * 16 + acc_row(i), col = k0 + acc_col(nt, i);
                    float p = edge && (col > row || col >= T)
                                  ? 0.0f
                                  : exp2f(s[mt][nt][i] * scale_log2 - row_lse[mt][half]);
                    /* dS, without the softmax scale */
                    s[mt][nt][i] = p * (dp[mt][nt][i] - row_D[mt][half]);
                }
            }
        }
        mma_acc_tile_mt<HS, BN / 16, MT>(acc, s, cK); /* dQ += dS K */
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        store_rows<HS>(dq + (size_t)b * T * dq_stride + h * HS, dq_stride, acc[mt], scale,
                       q0 + row0 + mt * 16, T, false);
    }
}

/* dkv: a block owns 64 keys of one K/V head (16 per warp) and walks, for every query head of
 * the group, the query blocks that see them, BMQ query rows at a time. */
template <int HS, int BMQ, int MINB>
__global__ void __launch_bounds__(FLASH_THREADS, MINB)
    flash_backward_dkv_kernel(bf16 *dk, bf16 *dv, bool zero, const bf16 *dout, const float *lse,
                              const float *D, const bf16 *q, int q_stride, const bf16 *k,
                              const bf16 *v, int kv_stride, int T, int NH, int NKV, float scale,
                              float scale_log2)
{
    constexpr int BN = BLOCK_ROWS;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sK = reinterpret_cast<bf16 *>(smem); /* (BN, HS) */
    bf16 *sV = sK + BN * HS;                    /* (BN, HS) */
    bf16 *sQ = sV + BN * HS;                    /* 2 x (BMQ, HS) */
    bf16 *sdO = sQ + 2 * BMQ * HS;              /* 2 x (BMQ, HS) */
    float *sL = reinterpret_cast<float *>(sdO + 2 * BMQ * HS); /* 2 x BMQ: log-sum-exp */
    float *sD = sL + 2 * BMQ;                                   /* 2 x BMQ */

    int kblock = blockIdx.x; /* the longest walks (first keys) first */
    int b = blockIdx.y / NKV, g = blockIdx.y % NKV;
    int group = NH / NKV;
    int warp = threadIdx.x / 32;
    int k0 = kblock * BN;
    int C = NH * HS;
    const bf16 *kg = k + ((size_t)b * T + k0) * kv_stride + g * HS;
    const bf16 *vg = v + ((size_t)b * T + k0) * kv_stride + g * HS;

    int qb_first = k0 / BMQ, qb_count = (T + BMQ - 1) / BMQ - qb_first;
    int n_iter = group * qb_count;

    /* Queue query block `it` (head g*group + it / qb_count) into buffer `buf`. */
    auto load_q = [&](int it, int buf) {
        int h = g * group + it / qb_count;
        int qq0 = (qb_first + it % qb_count) * BMQ;
        tile_load<HS, BMQ>(sQ + buf * BMQ * HS, q + ((size_t)b * T + qq0) * q_stride + h * HS,
                           q_stride, T - qq0);
        tile_load<HS, BMQ>(sdO + buf * BMQ * HS, dout + ((size_t)b * T + qq0) * C + h * HS, C,
                           T - qq0);
        const float *lse_row = lse + ((size_t)b * NH + h) * T,
                    *D_row = D + ((size_t)b * NH + h) * T;
        for (int i = threadIdx.x; i < BMQ; i += FLASH_THREADS) { /* zero past T: masked anyway */
            bool valid = qq0 + i < T;
            cp_async4(sL + buf * BMQ + i, valid ? lse_row + qq0 + i : lse_row, valid);
            cp_async4(sD + buf * BMQ + i, valid ? D_row + qq0 + i : D_row, valid);
        }
    };

    tile_load<HS, BN>(sK, kg, kv_stride, T - k0);
    tile_load<HS, BN>(sV, vg, kv_stride, T - k0);
    load_q(0, 0);
    cp_async_commit();

    float dk_acc[HS / 8][4], dv_acc[HS / 8][4];
#pragma unroll
    for (int dt = 0; dt < HS / 8; dt++) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            dk_acc[dt][i] = 0.0f;
            dv_acc[dt][i] = 0.0f;
        }
    }
    for (int it = 0; it < n_iter; it++) {
        int buf = it & 1;
        if (it + 1 < n_iter) {
            load_q(it + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *cQ = sQ + buf * BMQ * HS, *cdO = sdO + buf * BMQ * HS;
        const float *cL = sL + buf * BMQ, *cD = sD + buf * BMQ;
        int qq0 = (qb_first + it % qb_count) * BMQ;

        float s[BMQ / 8][4], dp[BMQ / 8][4];
#pragma unroll
        for (int nt = 0; nt < BMQ / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            dp[nt][0] = dp[nt][1] = dp[nt][2] = dp[nt][3] = 0.0f;
        }
        {
            uint32_t kf[HS / 16][4];
            load_a_frags<HS>(kf, sK, warp * 16);
            mma_a_tileT<HS, BMQ / 8>(s, kf, cQ); /* S^T = K Q^T */
        }
        {
            uint32_t vf[HS / 16][4];
            load_a_frags<HS>(vf, sV, warp * 16);
            mma_a_tileT<HS, BMQ / 8>(dp, vf, cdO); /* dP^T = V dO^T */
        }
        /* some query of the block precedes some key, or a row is past T */
        bool edge = qq0 < k0 + BN - 1 || qq0 + BMQ > T || k0 + BN > T;
#pragma unroll
        for (int nt = 0; nt < BMQ / 8; nt++) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int key = k0 + warp * 16 + acc_row(i);
                int qi = acc_col(nt, i), col = qq0 + qi;
                float p = edge && (col < key || col >= T || key >= T)
                              ? 0.0f
                              : exp2f(s[nt][i] * scale_log2 - cL[qi] * LOG2E);
                s[nt][i] = p;                     /* P^T */
                dp[nt][i] = p * (dp[nt][i] - cD[qi]); /* dS^T, without the softmax scale */
            }
        }
        mma_acc_tile<HS, BMQ / 16>(dv_acc, s, cdO); /* dV += P^T dO */
        mma_acc_tile<HS, BMQ / 16>(dk_acc, dp, cQ); /* dK += dS^T Q */
        __syncthreads();
    }
    int key0 = k0 + warp * 16;
    store_rows<HS>(dk + (size_t)b * T * kv_stride + g * HS, kv_stride, dk_acc, scale, key0, T,
                   !zero);
    store_rows<HS>(dv + (size_t)b * T * kv_stride + g * HS, kv_stride, dv_acc, 1.0f, key0, T,
                   !zero);
}

/* ---------------------------------------------------------------------------------------------
 * Launchers */

template <int HS, int MT> static size_t forward_smem()
{
    return (size_t)(MT + 4) * BLOCK_ROWS * HS * 2;
}
template <int HS, int MT, int BN> static size_t dq_smem()
{
    return ((size_t)2 * BLOCK_ROWS * MT + 4 * BN) * HS * 2;
}
template <int HS, int BMQ> static size_t dkv_smem()
{
    return (size_t)(2 * BLOCK_ROWS + 4 * BMQ) * HS * 2 + 4 * BMQ * sizeof(float);
}

template <int HS, int MT>
static loco_status flash_forward(bf16 *out, float *lse, const bf16 *q, int q_stride, const bf16 *k,
                                 const bf16 *v, int kv_stride, int B, int T, int NH, int NKV,
                                 cudaStream_t stream)
{
    size_t smem = forward_smem<HS, MT>();
    CUDA_TRY(cudaFuncSetAttribute(flash_forward_kernel<HS, MT>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(ceil_div(T, BLOCK_ROWS * MT), B * NH);
    float scale_log2 = LOG2E / sqrtf((float)HS);
    flash_forward_kernel<HS, MT><<<grid, FLASH_THREADS, smem, stream>>>(
        out, lse, q, q_stride, k, v, kv_stride, T, NH, NKV, scale_log2);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

template <int HS, int BMQ, int MINB, int DQ_MT, int DQ_BN>
static loco_status flash_backward(const float *D, bf16 *dq, int dq_stride, bf16 *dk, bf16 *dv,
                                  bool zero, const bf16 *dout, const float *lse, const bf16 *q,
                                  int q_stride, const bf16 *k, const bf16 *v, int kv_stride, int B,
                                  int T, int NH, int NKV, cudaStream_t stream)
{
    float scale = 1.0f / sqrtf((float)HS), scale_log2 = LOG2E * scale;
    size_t smem = dkv_smem<HS, BMQ>();
    CUDA_TRY(cudaFuncSetAttribute(flash_backward_dkv_kernel<HS, BMQ, MINB>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid_kv(ceil_div(T, BLOCK_ROWS), B * NKV);
    flash_backward_dkv_kernel<HS, BMQ, MINB><<<grid_kv, FLASH_THREADS, smem, stream>>>(
        dk, dv, zero, dout, lse, D, q, q_stride, k, v, kv_stride, T, NH, NKV, scale, scale_log2);
    CUDA_LAUNCH_TRY();
    smem = dq_smem<HS, DQ_MT, DQ_BN>();
    CUDA_TRY(cudaFuncSetAttribute(flash_backward_dq_kernel<HS, DQ_MT, DQ_BN>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid_q(ceil_div(T, BLOCK_ROWS * DQ_MT), B * NH);
    flash_backward_dq_kernel<HS, DQ_MT, DQ_BN><<<grid_q, FLASH_THREADS, smem, stream>>>(
        dq, dq_stride, dout, lse, D, q, q_stride, k, v, kv_stride, T, NH, NKV, scale, scale_log2);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

static bool flash_ok(int hs, int q_stride, int kv_stride, const void *q, const void *k,
                     const void *v)
{
    bool aligned = 0 == ((uintptr_t)q & 15) && 0 == ((uintptr_t)k & 15) &&
                   0 == ((uintptr_t)v & 15) && 0 == q_stride % 8 && 0 == kv_stride % 8;
    return (64 == hs || 128 == hs) && aligned;
}

extern "C" size_t loco_attention_scratch_floats_cuda(int B, int T, int NH)
{
    return (size_t)B * NH * T;
}

/* The tile shapes the model uses: the fastest of `loco bench gpu --kernels` at the GPT-2 shape
 * on an H200 (2026-11-27: forward 0.152 ms, backward 0.499 ms a layer; dq with two m-tiles was
 * 5% slower at 2 blocks per multiprocessor, dK/dV at 2 blocks 5% slower). */
static const loco_flash_tiles k_default_tiles = {2, 1, 3};

extern "C" loco_status loco_attention_forward_tiles_cuda(const loco_flash_tiles *tiles,
                                                         loco_bf16 *out, float *lse,
                                                         const loco_bf16 *q, int q_stride,
                                                         const loco_bf16 *k, const loco_bf16 *v,
                                                         int kv_stride, int B, int T, int NH,
                                                         int NKV, int hs, cudaStream_t stream)
{
    if (!flash_ok(hs, q_stride, kv_stride, q, k, v)) {
        return loco_attention_forward_plain_cuda(out, lse, q, q_stride, k, v, kv_stride, B, T, NH,
                                                 NKV, hs, stream);
    }
    bf16 *o = as_bf16(out);
    const bf16 *qq = as_bf16(q), *kk = as_bf16(k), *vv = as_bf16(v);
    if (64 == hs && 2 == tiles->forward_mt) {
        return flash_forward<64, 2>(o, lse, qq, q_stride, kk, vv, kv_stride, B, T, NH, NKV, stream);
    }
    if (64 == hs) {
        return flash_forward<64, 1>(o, lse, qq, q_stride, kk, vv, kv_stride, B, T, NH, NKV, stream);
    }
    return flash_forward<128, 1>(o, lse, qq, q_stride, kk, vv, kv_stride, B, T, NH, NKV, stream);
}

extern "C" loco_status loco_attention_forward_cuda(loco_bf16 *out, float *lse, const loco_bf16 *q,
                                                   int q_stride, const loco_bf16 *k,
                                                   const loco_bf16 *v, int kv_stride, int B, int T,
                                                   int NH, int NKV, int hs, cudaStream_t stream)
{
    return loco_attention_forward_tiles_cuda(&k_default_tiles, out, lse, q, q_stride, k, v,
                                             kv_stride, B, T, NH, NKV, hs, stream);
}

static loco_status attention_dvec(float *D, const loco_bf16 *dout, const loco_bf16 *out, int B,
                                  int T, int NH, int hs, cudaStream_t stream)
{
    size_t rows = (size_t)B * T * NH;
    attention_dvec_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(D, as_bf16(dout), as_bf16(out),
                                                                 B, T, NH, hs);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

extern "C" loco_status loco_attention_backward_tiles_cuda(
    const loco_flash_tiles *tiles, float *scratch, loco_bf16 *dq, int dq_stride, loco_bf16 *dk,
    loco_bf16 *dv, bool zero_dkv, const loco_bf16 *dout, const loco_bf16 *out, const float *lse,
    const loco_bf16 *q, int q_stride, const loco_bf16 *k, const loco_bf16 *v, int kv_stride, int B,
    int T, int NH, int NKV, int hs, cudaStream_t stream)
{
    if (!flash_ok(hs, q_stride, kv_stride, q, k, v) || 0 != dq_stride % 8) {
        return loco_attention_backward_plain_cuda(scratch, dq, dq_stride, dk, dv, zero_dkv, dout,
                                                  out, lse, q, q_stride, k, v, kv_stride, B, T,
                                                  NH, NKV, hs, stream);
    }
    LOCO_TRY(attention_dvec(scratch, dout, out, B, T, NH, hs, stream));
    bf16 *gq = as_bf16(dq), *gk = as_bf16(dk), *gv = as_bf16(dv);
    const bf16 *go = as_bf16(dout), *qq = as_bf16(q), *kk = as_bf16(k), *vv = as_bf16(v);
    if (128 == hs) {
        return flash_backward<128, 32, 1, 1, 64>(scratch, gq, dq_stride, gk, gv, zero_dkv, go, lse,
                                                 qq, q_stride, kk, vv, kv_stride, B, T, NH, NKV,
                                                 stream);
    }
    bool dq2 = 2 == tiles->dq_mt, dkv3 = 3 == tiles->dkv_blocks;
    if (dq2 && dkv3) {
        return flash_backward<64, 64, 3, 2, 32>(scratch, gq, dq_stride, gk, gv, zero_dkv, go, lse,
                                                qq, q_stride, kk, vv, kv_stride, B, T, NH, NKV,
                                                stream);
    }
    if (dq2) {
        return flash_backward<64, 64, 2, 2, 32>(scratch, gq, dq_stride, gk, gv, zero_dkv, go, lse,
                                                qq, q_stride, kk, vv, kv_stride, B, T, NH, NKV,
                                                stream);
    }
    if (dkv3) {
        return flash_backward<64, 64, 3, 1, 64>(scratch, gq, dq_stride, gk, gv, zero_dkv, go, lse,
                                                qq, q_stride, kk, vv, kv_stride, B, T, NH, NKV,
                                                stream);
    }
    return flash_backward<64, 64, 2, 1, 64>(scratch, gq, dq_stride, gk, gv, zero_dkv, go, lse, qq,
                                            q_stride, kk, vv, kv_stride, B, T, NH, NKV, stream);
}

extern "C" loco_status loco_attention_backward_cuda(float *scratch, loco_bf16 *dq, int dq_stride,
                                                    loco_bf16 *dk, loco_bf16 *dv, bool zero_dkv,
                                                    const loco_bf16 *dout, const loco_bf16 *out,
                                                    const float *lse, const loco_bf16 *q,
                                                    int q_stride, const loco_bf16 *k,
                                                    const loco_bf16 *v, int kv_stride, int B,
                                                    int T, int NH, int NKV, int hs,
                                                    cudaStream_t stream)
{
    return loco_attention_backward_tiles_cuda(&k_default_tiles, scratch, dq, dq_stride, dk, dv,
                                              zero_dkv, dout, out, lse, q, q_stride, k, v,
                                              kv_stride, B, T, NH, NKV, hs, stream);
}

/* ---------------------------------------------------------------------------------------------
 * Plain kernels: one warp per query row (forward, dq) or per key (dk, dv), lanes over the head
 * dimension, fp32 throughout; any head size up to PLAIN_MAX_HS. */

#define PLAIN_MAX_HS 256
#define PLAIN_PER_LANE (PLAIN_MAX_HS / 32)

__device__ __forceinline__ float plain_dot(const bf16 *a, const bf16 *b, int hs)
{
    float acc = 0.0f;
    for (int d = threadIdx.x % 32; d < hs; d += 32) {
        acc += __bfloat162float(a[d]) * __bfloat162float(b[d]);
    }
    return warp_sum(acc);
}

__global__ void plain_forward_kernel(bf16 *out, float *lse, const bf16 *q, int q_stride,
                                     const bf16 *k, const bf16 *v, int kv_stride, int B, int T,
                                     int NH, int NKV, int hs, float scale)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; /* (b, h, t) */
    int lane = threadIdx.x % 32;
    if (row >= (size_t)B * NH * T) {
        return;
    }
    int t = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / T / NH);
    int g = h / (NH / NKV);
    const bf16 *qr = q + ((size_t)b * T + t) * q_stride + h * hs;
    float m = -INFINITY, l = 0.0f, acc[PLAIN_PER_LANE] = {0};
    for (int j = 0; j <= t; j++) {
        const bf16 *kr = k + ((size_t)b * T + j) * kv_stride + g * hs;
        const bf16 *vr = v + ((size_t)b * T + j) * kv_stride + g * hs;
        float s = plain_dot(qr, kr, hs) * scale;
        float m_new = fmaxf(m, s);
        float corr = expf(m - m_new), p = expf(s - m_new);
        l = l * corr + p;
        for (int i = 0; i < PLAIN_PER_LANE; i++) {
            int d = lane + 32 * i;
            acc[i] = acc[i] * corr + (d < hs ? p * __bfloat162float(vr[d]) : 0.0f);
        }
        m = m_new;
    }
    bf16 *o = out + ((size_t)b * T + t) * NH * hs + h * hs;
    for (int i = 0; i < PLAIN_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hs) {
            o[d] = __float2bfloat16(acc[i] / l);
        }
    }
    if (0 == lane) {
        lse[row] = m + logf(l);
    }
}

__global__ void plain_backward_dq_kernel(bf16 *dq, int dq_stride, const bf16 *dout,
                                         const float *lse, const float *D, const bf16 *q,
                                         int q_stride, const bf16 *k, const bf16 *v,
                                         int kv_stride, int B, int T, int NH, int NKV, int hs,
                                         float scale)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; /* (b, h, t) */
    int lane = threadIdx.x % 32;
    if (row >= (size_t)B * NH * T) {
        return;
    }
    int t = (int)(row % T), h = (int)(row / T % NH), b = (int)(row / T / NH);
    int g = h / (NH / NKV);
    const bf16 *qr = q + ((size_t)b * T + t) * q_stride + h * hs;
    const bf16 *dor = dout + ((size_t)b * T + t) * NH * hs + h * hs;
    float acc[PLAIN_PER_LANE] = {0};
    for (int j = 0; j <= t; j++) {
        const bf16 *kr = k + ((size_t)b * T + j) * kv_stride + g * hs;
        const bf16 *vr = v + ((size_t)b * T + j) * kv_stride + g * hs;
        float p = expf(plain_dot(qr, kr, hs) * scale - lse[row]);
        float ds = p * (plain_dot(dor, vr, hs) - D[row]);
        for (int i = 0; i < PLAIN_PER_LANE; i++) {
            int d = lane + 32 * i;
            acc[i] += d < hs ? ds * __bfloat162float(kr[d]) : 0.0f;
        }
    }
    bf16 *o = dq + ((size_t)b * T + t) * dq_stride + h * hs;
    for (int i = 0; i < PLAIN_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hs) {
            o[d] = __float2bfloat16(acc[i] * scale);
        }
    }
}

__global__ void plain_backward_dkv_kernel(bf16 *dk, bf16 *dv, bool zero, const bf16 *dout,
                                          const float *lse, const float *D, const bf16 *q,
                                          int q_stride, const bf16 *k, const bf16 *v,
                                          int kv_stride, int B, int T, int NH, int NKV, int hs,
                                          float scale)
{
    size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; /* (b, g, j) */
    int lane = threadIdx.x % 32;
    if (row >= (size_t)B * NKV * T) {
        return;
    }
    int j = (int)(row % T), g = (int)(row / T % NKV), b = (int)(row / T / NKV);
    int group = NH / NKV;
    const bf16 *kr = k + ((size_t)b * T + j) * kv_stride + g * hs;
    const bf16 *vr = v + ((size_t)b * T + j) * kv_stride + g * hs;
    float dka[PLAIN_PER_LANE] = {0}, dva[PLAIN_PER_LANE] = {0};
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int t = j; t < T; t++) {
            size_t at = ((size_t)b * NH + h) * T + t;
            const bf16 *qr = q + ((size_t)b * T + t) * q_stride + h * hs;
            const bf16 *dor = dout + ((size_t)b * T + t) * NH * hs + h * hs;
            float p = expf(plain_dot(qr, kr, hs) * scale - lse[at]);
            float ds = p * (plain_dot(dor, vr, hs) - D[at]);
            for (int i = 0; i < PLAIN_PER_LANE; i++) {
                int d = lane + 32 * i;
                if (d < hs) {
                    dva[i] += p * __bfloat162float(dor[d]);
                    dka[i] += ds * __bfloat162float(qr[d]);
                }
            }
        }
    }
    bf16 *dkr = dk + ((size_t)b * T + j) * kv_stride + g * hs;
    bf16 *dvr = dv + ((size_t)b * T + j) * kv_stride + g * hs;
    for (int i = 0; i < PLAIN_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < hs) {
            float kx = dka[i] * scale, vx = dva[i];
            if (!zero) {
                kx += __bfloat162float(dkr[d]);
                vx += __bfloat162float(dvr[d]);
            }
            dkr[d] = __float2bfloat16(kx);
            dvr[d] = __float2bfloat16(vx);
        }
    }
}

extern "C" loco_status loco_attention_forward_plain_cuda(loco_bf16 *out, float *lse,
                                                         const loco_bf16 *q, int q_stride,
                                                         const loco_bf16 *k, const loco_bf16 *v,
                                                         int kv_stride, int B, int T, int NH,
                                                         int NKV, int hs, cudaStream_t stream)
{
    if (hs > PLAIN_MAX_HS) {
        LOCO_ERROR("attention: head size %d is above the supported %d", hs, PLAIN_MAX_HS);
        return LOCO_ERR_UNSUPPORTED;
    }
    size_t rows = (size_t)B * NH * T;
    plain_forward_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(
        as_bf16(out), lse, as_bf16(q), q_stride, as_bf16(k), as_bf16(v), kv_stride, B, T, NH,
        NKV, hs, 1.0f / sqrtf((float)hs));
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}

extern "C" loco_status loco_attention_backward_plain_cuda(
    float *scratch, loco_bf16 *dq, int dq_stride, loco_bf16 *dk, loco_bf16 *dv, bool zero_dkv,
    const loco_bf16 *dout, const loco_bf16 *out, const float *lse, const loco_bf16 *q,
    int q_stride, const loco_bf16 *k, const loco_bf16 *v, int kv_stride, int B, int T, int NH,
    int NKV, int hs, cudaStream_t stream)
{
    if (hs > PLAIN_MAX_HS) {
        LOCO_ERROR("attention: head size %d is above the supported %d", hs, PLAIN_MAX_HS);
        return LOCO_ERR_UNSUPPORTED;
    }
    float scale = 1.0f / sqrtf((float)hs);
    LOCO_TRY(attention_dvec(scratch, dout, out, B, T, NH, hs, stream));
    size_t rows = (size_t)B * NH * T;
    plain_backward_dq_kernel<<<ceil_div(rows, 8), 256, 0, stream>>>(
        as_bf16(dq), dq_stride, as_bf16(dout), lse, scratch, as_bf16(q), q_stride, as_bf16(k),
        as_bf16(v), kv_stride, B, T, NH, NKV, hs, scale);
    CUDA_LAUNCH_TRY();
    size_t kv_rows = (size_t)B * NKV * T;
    plain_backward_dkv_kernel<<<ceil_div(kv_rows, 8), 256, 0, stream>>>(
        as_bf16(dk), as_bf16(dv), zero_dkv, as_bf16(dout), lse, scratch, as_bf16(q), q_stride,
        as_bf16(k), as_bf16(v), kv_stride, B, T, NH, NKV, hs, scale);
    CUDA_LAUNCH_TRY();
    return LOCO_OK;
}
