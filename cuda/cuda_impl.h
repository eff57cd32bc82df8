/* cuda/cuda_impl.h — private to cuda/: error checks, the context's insides, bf16 vectors and
 * small device helpers shared by the .cu files. */
#ifndef LOCO_CUDA_CUDA_IMPL_H
#define LOCO_CUDA_CUDA_IMPL_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "base/base.h"
}
#include "cuda/cuda.h"
#include "cuda/layers_cuda.h"

typedef __nv_bfloat16 bf16;

/* ---------------------------------------------------------------------------------------------
 * Checks: log the failing call with file:line and return LOCO_ERR_CUDA (library code never
 * exits). */

loco_status loco_cuda_fail(cudaError_t e, const char *call, const char *file, int line);
loco_status loco_cublas_fail(cublasStatus_t s, const char *call, const char *file, int line);

#define CUDA_TRY(call)                                                     \
    do {                                                                   \
        cudaError_t loco_e_ = (call);                                      \
        if (cudaSuccess != loco_e_) {                                      \
            return loco_cuda_fail(loco_e_, #call, __FILE__, __LINE__);     \
        }                                                                  \
    } while (0)

/* After a kernel launch: a bad configuration shows here, a fault at the next synchronization. */
#define CUDA_LAUNCH_TRY() CUDA_TRY(cudaGetLastError())

#define CUBLAS_TRY(call)                                                   \
    do {                                                                   \
        cublasStatus_t loco_s_ = (call);                                   \
        if (CUBLAS_STATUS_SUCCESS != loco_s_) {                            \
            return loco_cublas_fail(loco_s_, #call, __FILE__, __LINE__);   \
        }                                                                  \
    } while (0)

/* A status with a message for err: "<what>: CUDA error (details in the log above)". */
loco_status loco_cuda_error(loco_error *err, loco_status st, const char *what);

/* ---------------------------------------------------------------------------------------------
 * The context (opaque in cuda.h) */

struct loco_cuda_ctx {
    int device;
    int sm_count;
    char name[256];
    cudaStream_t stream;
    loco_cuda_blas blas;
    double *reduce_scratch; /* (loco_sum_scratch_doubles() + 1) device doubles */
    double *reduce_host;    /* one pinned double */
};

/* dbias (OC) += column sums of dout (N, OC), in a fixed order (layers.cu; matmul.cu uses it). */
loco_status loco_bias_backward_cuda(float *dbias, float *scratch, const __nv_bfloat16 *dout, int N,
                                    int OC, cudaStream_t stream);

/* ---------------------------------------------------------------------------------------------
 * Device helpers */

static inline unsigned int ceil_div(size_t a, size_t b) { return (unsigned int)((a + b - 1) / b); }

/* Eight bf16 in one 16-byte access. */
struct alignas(16) bf16x8 {
    __nv_bfloat162 h[4];
};

__device__ __forceinline__ void load8(float out[8], const bf16 *p)
{
    bf16x8 v = *reinterpret_cast<const bf16x8 *>(p);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(v.h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ void store8(bf16 *p, const float in[8])
{
    bf16x8 v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        v.h[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
    }
    *reinterpret_cast<bf16x8 *>(p) = v;
}

__device__ __forceinline__ float warp_sum(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        x += __shfl_xor_sync(0xffffffffu, x, o);
    }
    return x;
}

__device__ __forceinline__ float warp_max(float x)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    }
    return x;
}

static inline bf16 *as_bf16(loco_bf16 *p) { return reinterpret_cast<bf16 *>(p); }
static inline const bf16 *as_bf16(const loco_bf16 *p) { return reinterpret_cast<const bf16 *>(p); }

#endif /* LOCO_CUDA_CUDA_IMPL_H */
