/* cuda/device.cu — devices, contexts (stream + cuBLASLt + reduction scratch), device memory and
 * the error reporting every other .cu file uses (see cuda.h). */
#include "cuda/cuda_impl.h"

#include <stdio.h>
#include <string.h>

#define BLAS_WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLASLt's recommendation for Hopper */

loco_status loco_cuda_fail(cudaError_t e, const char *call, const char *file, int line)
{
    LOCO_ERROR("CUDA error %s (%s) in %s at %s:%d", cudaGetErrorName(e), cudaGetErrorString(e),
               call, file, line);
    return LOCO_ERR_CUDA;
}

loco_status loco_cublas_fail(cublasStatus_t s, const char *call, const char *file, int line)
{
    LOCO_ERROR("cuBLAS error %d in %s at %s:%d", (int)s, call, file, line);
    return LOCO_ERR_CUDA;
}

loco_status loco_cuda_error(loco_error *err, loco_status st, const char *what)
{
    if (LOCO_ERR_CUDA == st) {
        return loco_error_set(err, st, "%s: a CUDA call failed (the log line above names it)",
                              what);
    }
    return loco_error_set(err, st, "%s failed: %s", what, loco_status_str(st));
}

extern "C" bool loco_cuda_built(void) { return true; }

extern "C" int loco_cuda_device_count(void)
{
    int n = 0;
    if (cudaSuccess != cudaGetDeviceCount(&n)) {
        (void)cudaGetLastError(); /* clear the sticky "no driver" error */
        return 0;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Contexts */

static loco_status ctx_open(loco_cuda_ctx *c, int device)
{
    CUDA_TRY(cudaSetDevice(device));
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    c->sm_count = prop.multiProcessorCount;
    snprintf(c->name, sizeof c->name, "%s", prop.name);
    CUDA_TRY(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUBLAS_TRY(cublasLtCreate(&c->blas.lt));
    CUDA_TRY(cudaMalloc(&c->blas.workspace, BLAS_WORKSPACE_BYTES));
    c->blas.workspace_bytes = BLAS_WORKSPACE_BYTES;
    CUDA_TRY(cudaMalloc(&c->reduce_scratch, (loco_sum_scratch_doubles() + 1) * sizeof(double)));
    CUDA_TRY(cudaMallocHost(&c->reduce_host, sizeof(double)));
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_ctx_init(loco_cuda_ctx **ctx, int device, loco_error *err)
{
    *ctx = NULL;
    int count = loco_cuda_device_count();
    if (device < 0 || device >= count) {
        return loco_error_set(err, LOCO_ERR_CUDA,
                              "CUDA device %d does not exist (%d usable device%s; check the driver "
                              "and CUDA_VISIBLE_DEVICES)",
                              device, count, 1 == count ? "" : "s");
    }
    loco_cuda_ctx *c = (loco_cuda_ctx *)calloc(1, sizeof *c);
    if (NULL == c) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for a CUDA context");
    }
    c->device = device;
    loco_status st = ctx_open(c, device);
    if (LOCO_OK != st) {
        loco_cuda_ctx_free(c);
        return loco_cuda_error(err, st, "opening the CUDA device");
    }
    *ctx = c;
    return LOCO_OK;
}

extern "C" void loco_cuda_ctx_free(loco_cuda_ctx *ctx)
{
    if (NULL == ctx) {
        return;
    }
    if (NULL != ctx->stream) {
        cudaStreamSynchronize(ctx->stream);
        cudaStreamDestroy(ctx->stream);
    }
    if (NULL != ctx->blas.lt) {
        cublasLtDestroy(ctx->blas.lt);
    }
    cudaFree(ctx->blas.workspace);
    cudaFree(ctx->reduce_scratch);
    cudaFreeHost(ctx->reduce_host);
    free(ctx);
}

extern "C" const char *loco_cuda_ctx_device_name(const loco_cuda_ctx *ctx) { return ctx->name; }
extern "C" int loco_cuda_ctx_sm_count(const loco_cuda_ctx *ctx) { return ctx->sm_count; }

extern "C" loco_status loco_cuda_bind(loco_cuda_ctx *ctx, loco_error *err)
{
    cudaError_t e = cudaSetDevice(ctx->device);
    if (cudaSuccess != e) {
        return loco_cuda_error(err, loco_cuda_fail(e, "cudaSetDevice", __FILE__, __LINE__),
                               "selecting the worker's GPU");
    }
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_sync(loco_cuda_ctx *ctx, loco_error *err)
{
    cudaError_t e = cudaStreamSynchronize(ctx->stream);
    if (cudaSuccess != e) {
        return loco_cuda_error(err, loco_cuda_fail(e, "cudaStreamSynchronize", __FILE__, __LINE__),
                               "waiting for the GPU");
    }
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Memory */

extern "C" loco_status loco_cuda_alloc(void **dev, size_t bytes, loco_error *err)
{
    *dev = NULL;
    cudaError_t e = cudaMalloc(dev, bytes > 0 ? bytes : 1);
    if (cudaSuccess == e) {
        e = cudaMemset(*dev, 0, bytes);
    }
    /* cudaMemset is asynchronous and runs on the legacy default stream, which the contexts'
     * non-blocking streams do not wait for: without this wait an upload queued next on a
     * context's stream can land first and be zeroed (seen with several processes on one GPU). */
    if (cudaSuccess == e) {
        e = cudaStreamSynchronize(cudaStreamLegacy);
    }
    if (cudaSuccess != e) {
        size_t free_b = 0, total_b = 0;
        (void)cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        cudaFree(*dev);
        *dev = NULL;
        return loco_error_set(err, cudaErrorMemoryAllocation == e ? LOCO_ERR_NOMEM : LOCO_ERR_CUDA,
                              "cannot allocate %.2f GiB on the GPU (%.2f of %.2f GiB free): %s; "
                              "lower the batch or sequence length",
                              bytes / 1073741824.0, free_b / 1073741824.0,
                              total_b / 1073741824.0, cudaGetErrorString(e));
    }
    return LOCO_OK;
}

extern "C" void loco_cuda_free(void *dev) { cudaFree(dev); }

loco_status loco_cuda_finish_status(loco_cuda_ctx *ctx, cudaError_t e, const int *status,
                                    int *host, const char *what, loco_error *err)
{
    *host = 0;
    if (cudaSuccess == e) {
        e = cudaMemcpyAsync(host, status, sizeof *host, cudaMemcpyDeviceToHost, ctx->stream);
    }
    if (cudaSuccess == e) {
        e = cudaStreamSynchronize(ctx->stream);
    }
    if (cudaSuccess != e) {
        return loco_cuda_error(err, loco_cuda_fail(e, what, __FILE__, __LINE__), what);
    }
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_pin(void *host, size_t bytes, loco_error *err)
{
    cudaError_t e = cudaHostRegister(host, bytes, cudaHostRegisterDefault);
    if (cudaSuccess != e) {
        (void)cudaGetLastError();
        return loco_error_set(err, LOCO_ERR_CUDA, "cannot pin %.2f GiB of host memory: %s",
                              bytes / 1073741824.0, cudaGetErrorString(e));
    }
    return LOCO_OK;
}

extern "C" void loco_cuda_unpin(void *host)
{
    if (NULL != host) {
        (void)cudaHostUnregister(host);
    }
}

static loco_status copy_sync(loco_cuda_ctx *ctx, void *dst, const void *src, size_t bytes,
                             cudaMemcpyKind kind)
{
    CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kind, ctx->stream));
    CUDA_TRY(cudaStreamSynchronize(ctx->stream));
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_upload(loco_cuda_ctx *ctx, void *dev, const void *host,
                                        size_t bytes, loco_error *err)
{
    loco_status st = copy_sync(ctx, dev, host, bytes, cudaMemcpyHostToDevice);
    return LOCO_OK == st ? st : loco_cuda_error(err, st, "copying to the GPU");
}

extern "C" loco_status loco_cuda_download(loco_cuda_ctx *ctx, void *host, const void *dev,
                                          size_t bytes, loco_error *err)
{
    loco_status st = copy_sync(ctx, host, dev, bytes, cudaMemcpyDeviceToHost);
    return LOCO_OK == st ? st : loco_cuda_error(err, st, "copying from the GPU");
}

extern "C" loco_status loco_cuda_zero(loco_cuda_ctx *ctx, void *dev, size_t bytes,
                                      loco_error *err)
{
    cudaError_t e = cudaMemsetAsync(dev, 0, bytes, ctx->stream);
    if (cudaSuccess != e) {
        return loco_cuda_error(err, loco_cuda_fail(e, "cudaMemsetAsync", __FILE__, __LINE__),
                               "zeroing GPU memory");
    }
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_copy(loco_cuda_ctx *ctx, void *dst, const void *src,
                                      size_t bytes, loco_error *err)
{
    loco_status st = copy_sync(ctx, dst, src, bytes, cudaMemcpyDeviceToDevice);
    return LOCO_OK == st ? st : loco_cuda_error(err, st, "copying on the GPU");
}
