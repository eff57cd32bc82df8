/* cuda/optim.cu — optimizer updates on device buffers (see cuda.h): AdamW, SGD with momentum or
 * Nesterov, DiLoCo's outer Nesterov step, the gradient norm and scaling. One thread per
 * element, the formulas and operation order of optim/adamw.c and optim/sgd.c; scalars that
 * torch forms in double are formed in double on the host. Each update writes the bf16 copy of
 * the parameters in the same pass, so the model needs no separate cast.
 */
#include "cuda/cuda_impl.h"

#include <math.h>
#include <stdlib.h>

#define OPT_THREADS 256

/* Weight-decayed ranges [begin, end) of the flat buffer, sorted and disjoint (device copy). */
struct loco_cuda_decay {
    int count;
    uint64_t *ranges; /* device (count, 2) */
    size_t n;
};

extern "C" loco_status loco_cuda_decay_init(loco_cuda_decay **decay,
                                            const loco_tensor_table *table, size_t n,
                                            loco_error *err)
{
    *decay = NULL;
    int cap = NULL != table ? table->count : 1;
    uint64_t *host = (uint64_t *)calloc(2 * (size_t)(cap > 0 ? cap : 1), sizeof(uint64_t));
    loco_cuda_decay *d = (loco_cuda_decay *)calloc(1, sizeof *d);
    if (NULL == host || NULL == d) {
        free(host);
        free(d);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for weight-decay ranges");
    }
    int count = 0;
    if (NULL == table) {
        host[0] = 0;
        host[1] = n;
        count = n > 0 ? 1 : 0;
    } else {
        n = table->numel;
        for (int i = 0; i < table->count; i++) {
            const loco_tensor *t = &table->tensors[i];
            if (t->ndim < 2 || 0 == t->numel) {
                continue;
            }
            if (count > 0 && host[2 * count - 1] == t->offset) {
                host[2 * count - 1] = t->offset + t->numel; /* adjacent: extend */
            } else {
                host[2 * count] = t->offset;
                host[2 * count + 1] = t->offset + t->numel;
                count++;
            }
        }
    }
    d->count = count;
    d->n = n;
    loco_status st = loco_cuda_alloc((void **)&d->ranges, 2 * (size_t)(count > 0 ? count : 1) *
                                                              sizeof(uint64_t), err);
    if (LOCO_OK == st && count > 0) {
        cudaError_t e = cudaMemcpy(d->ranges, host, 2 * (size_t)count * sizeof(uint64_t),
                                   cudaMemcpyHostToDevice);
        if (cudaSuccess != e) {
            st = loco_cuda_error(err, loco_cuda_fail(e, "cudaMemcpy", __FILE__, __LINE__),
                                 "uploading weight-decay ranges");
        }
    }
    free(host);
    if (LOCO_OK != st) {
        loco_cuda_decay_free(d);
        return st;
    }
    *decay = d;
    return LOCO_OK;
}

extern "C" void loco_cuda_decay_free(loco_cuda_decay *decay)
{
    if (NULL != decay) {
        loco_cuda_free(decay->ranges);
        free(decay);
    }
}

/* Is element i inside one of the count sorted ranges? */
__device__ __forceinline__ bool decayed(const uint64_t *ranges, int count, uint64_t i)
{
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        uint64_t b = __ldg(ranges + 2 * mid), e = __ldg(ranges + 2 * mid + 1);
        if (i < b) {
            hi = mid - 1;
        } else if (i >= e) {
            lo = mid + 1;
        } else {
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Norm and scale */

extern "C" loco_status loco_cuda_grad_norm(loco_cuda_ctx *ctx, const float *grads, size_t n,
                                           double *norm, loco_error *err)
{
    double *out = ctx->reduce_scratch + loco_sum_scratch_doubles();
    loco_status st = loco_sum_cuda(out, ctx->reduce_scratch, grads, n, true, ctx->stream);
    if (LOCO_OK == st) {
        cudaError_t e = cudaMemcpyAsync(ctx->reduce_host, out, sizeof(double),
                                        cudaMemcpyDeviceToHost, ctx->stream);
        st = cudaSuccess == e ? LOCO_OK : loco_cuda_fail(e, "cudaMemcpyAsync", __FILE__, __LINE__);
    }
    if (LOCO_OK != st) {
        return loco_cuda_error(err, st, "gradient norm");
    }
    LOCO_TRY(loco_cuda_sync(ctx, err));
    *norm = sqrt(*ctx->reduce_host);
    return LOCO_OK;
}

__global__ void scale_kernel(float *x, size_t n, float s)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        x[i] *= s;
    }
}

extern "C" loco_status loco_cuda_scale(loco_cuda_ctx *ctx, float *x, size_t n, float s,
                                       loco_error *err)
{
    if (n > 0) {
        scale_kernel<<<ceil_div(n, OPT_THREADS), OPT_THREADS, 0, ctx->stream>>>(x, n, s);
        cudaError_t e = cudaGetLastError();
        if (cudaSuccess != e) {
            return loco_cuda_error(err, loco_cuda_fail(e, "scale_kernel", __FILE__, __LINE__),
                                   "scaling on the GPU");
        }
    }
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Updates */

struct adamw_scalars {
    float decay; /* 1 - lr wd for decayed elements */
    float b1, b2, one_minus_b1, one_minus_b2;
    float step_size, bc2_sqrt, eps;
};

__global__ void adamw_kernel(float *params, bf16 *params16, const float *grads, float *m, float *v,
                             const uint64_t *ranges, int n_ranges, adamw_scalars k, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    float g = grads[i];
    float p = params[i];
    if (decayed(ranges, n_ranges, i)) {
        p *= k.decay;
    }
    float mi = m[i] * k.b1 + k.one_minus_b1 * g;
    float vi = v[i] * k.b2 + k.one_minus_b2 * g * g;
    float denom = sqrtf(vi) / k.bc2_sqrt + k.eps;
    p -= k.step_size * (mi / denom);
    m[i] = mi;
    v[i] = vi;
    params[i] = p;
    if (NULL != params16) {
        params16[i] = __float2bfloat16_rn(p);
    }
}

static loco_status launch_status(loco_error *err, const char *what)
{
    cudaError_t e = cudaGetLastError();
    if (cudaSuccess != e) {
        return loco_cuda_error(err, loco_cuda_fail(e, what, __FILE__, __LINE__), what);
    }
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_adamw_update(loco_cuda_ctx *ctx, float *params,
                                              uint16_t *params_bf16, const float *grads, float *m,
                                              float *v, const loco_cuda_decay *decay, float lr,
                                              float beta1, float beta2, float eps,
                                              float weight_decay, int64_t t, size_t n,
                                              loco_error *err)
{
    adamw_scalars k;
    k.decay = (float)(1.0 - (double)lr * (double)weight_decay);
    k.b1 = beta1;
    k.b2 = beta2;
    k.one_minus_b1 = (float)(1.0 - (double)beta1);
    k.one_minus_b2 = (float)(1.0 - (double)beta2);
    double bias_correction1 = 1.0 - pow((double)beta1, (double)t);
    double bias_correction2 = 1.0 - pow((double)beta2, (double)t);
    k.step_size = (float)((double)lr / bias_correction1);
    k.bc2_sqrt = (float)sqrt(bias_correction2);
    k.eps = eps;
    if (n > 0) {
        adamw_kernel<<<ceil_div(n, OPT_THREADS), OPT_THREADS, 0, ctx->stream>>>(
            params, reinterpret_cast<bf16 *>(params_bf16), grads, m, v,
            NULL != decay ? decay->ranges : NULL, NULL != decay ? decay->count : 0, k, n);
    }
    return launch_status(err, "AdamW update on the GPU");
}

__global__ void sgd_kernel(float *params, bf16 *params16, const float *grads, float *buf,
                           const uint64_t *ranges, int n_ranges, float decay, float lr, float mu,
                           bool nesterov, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    float g = grads[i], d = g;
    if (NULL != buf) {
        float b = mu * buf[i] + g;
        buf[i] = b;
        d = nesterov ? g + mu * b : b;
    }
    float p = params[i] * (decayed(ranges, n_ranges, i) ? decay : 1.0f) - lr * d;
    params[i] = p;
    if (NULL != params16) {
        params16[i] = __float2bfloat16_rn(p);
    }
}

extern "C" loco_status loco_cuda_sgd_update(loco_cuda_ctx *ctx, float *params,
                                            uint16_t *params_bf16, const float *grads, float *buf,
                                            const loco_cuda_decay *decay, float lr, float momentum,
                                            bool nesterov, float weight_decay, size_t n,
                                            loco_error *err)
{
    float dec = (float)(1.0 - (double)lr * (double)weight_decay);
    if (n > 0) {
        sgd_kernel<<<ceil_div(n, OPT_THREADS), OPT_THREADS, 0, ctx->stream>>>(
            params, reinterpret_cast<bf16 *>(params_bf16), grads, buf,
            NULL != decay ? decay->ranges : NULL, NULL != decay ? decay->count : 0, dec, lr,
            momentum, nesterov, n);
    }
    return launch_status(err, "SGD update on the GPU");
}

__global__ void sub_kernel(float *out, const float *a, const float *b, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = __fsub_rn(a[i], b[i]); /* never contracted into anything else */
    }
}

extern "C" loco_status loco_cuda_sub(loco_cuda_ctx *ctx, float *out, const float *a,
                                     const float *b, size_t n, loco_error *err)
{
    if (n > 0) {
        sub_kernel<<<ceil_div(n, OPT_THREADS), OPT_THREADS, 0, ctx->stream>>>(out, a, b, n);
    }
    return launch_status(err, "pseudo-gradient on the GPU");
}

__global__ void outer_nesterov_kernel(float *outer, float *local, bf16 *local16,
                                      const float *delta, float *mom, float lr, float mu, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    float d = delta[i];
    float b = mu * mom[i] + d;
    float p = outer[i] - lr * (d + mu * b);
    mom[i] = b;
    outer[i] = p;
    local[i] = p;
    if (NULL != local16) {
        local16[i] = __float2bfloat16_rn(p);
    }
}

extern "C" loco_status loco_cuda_outer_nesterov(loco_cuda_ctx *ctx, float *outer, float *local,
                                                uint16_t *local_bf16, const float *delta,
                                                float *mom, float lr, float mu, size_t n,
                                                loco_error *err)
{
    if (n > 0) {
        outer_nesterov_kernel<<<ceil_div(n, OPT_THREADS), OPT_THREADS, 0, ctx->stream>>>(
            outer, local, reinterpret_cast<bf16 *>(local_bf16), delta, mom, lr, mu, n);
    }
    return launch_status(err, "outer Nesterov step on the GPU");
}
