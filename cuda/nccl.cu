/* cuda/nccl.cu — several GPUs of one host as one worker (see cuda.h): an NCCL communicator per
 * process, joined with an id that the caller distributes through loco's bootstrap, and averages
 * queued on a communication stream that waits for the compute stream by an event. Built only
 * with NCCL (LOCO_HAVE_NCCL); otherwise every call says so. */
#include "cuda/cuda_impl.h"

#if LOCO_HAVE_NCCL
#include <nccl.h>
#endif

#include <string.h>

#if LOCO_HAVE_NCCL

#define NCCL_TRY(call, err)                                                                \
    do {                                                                                   \
        ncclResult_t loco_r_ = (call);                                                     \
        if (ncclSuccess != loco_r_) {                                                      \
            LOCO_ERROR("NCCL error %s in %s at %s:%d", ncclGetErrorString(loco_r_), #call,  \
                       __FILE__, __LINE__);                                                \
            return loco_error_set(err, LOCO_ERR_CUDA, "NCCL: %s (%s)",                      \
                                  ncclGetErrorString(loco_r_), #call);                      \
        }                                                                                  \
    } while (0)

struct loco_cuda_nccl {
    loco_cuda_ctx *ctx;
    ncclComm_t comm;
    cudaStream_t stream;      /* communication stream */
    cudaEvent_t compute_done; /* recorded on the compute stream before each average */
    cudaEvent_t comm_done;    /* recorded on the communication stream by join */
};

extern "C" bool loco_cuda_nccl_built(void) { return true; }

extern "C" loco_status loco_cuda_nccl_unique_id(uint8_t id[LOCO_NCCL_ID_BYTES], loco_error *err)
{
    static_assert(sizeof(ncclUniqueId) == LOCO_NCCL_ID_BYTES, "NCCL id size");
    ncclUniqueId u;
    NCCL_TRY(ncclGetUniqueId(&u), err);
    memcpy(id, &u, sizeof u);
    return LOCO_OK;
}

static loco_status cuda_status(loco_error *err, cudaError_t e, const char *what)
{
    return loco_cuda_error(err, loco_cuda_fail(e, what, __FILE__, __LINE__), what);
}

extern "C" loco_status loco_cuda_nccl_init(loco_cuda_nccl **nccl, loco_cuda_ctx *ctx,
                                           const uint8_t id[LOCO_NCCL_ID_BYTES], int nranks,
                                           int rank, loco_error *err)
{
    *nccl = NULL;
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "NCCL rank %d of %d", rank, nranks);
    }
    loco_cuda_nccl *n = (loco_cuda_nccl *)calloc(1, sizeof *n);
    if (NULL == n) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for an NCCL communicator");
    }
    n->ctx = ctx;
    cudaError_t e = cudaSetDevice(ctx->device);
    if (cudaSuccess == e) {
        e = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
    }
    if (cudaSuccess == e) {
        e = cudaEventCreateWithFlags(&n->compute_done, cudaEventDisableTiming);
    }
    if (cudaSuccess == e) {
        e = cudaEventCreateWithFlags(&n->comm_done, cudaEventDisableTiming);
    }
    if (cudaSuccess != e) {
        loco_cuda_nccl_free(n);
        return cuda_status(err, e, "creating the NCCL stream and events");
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclResult_t r = ncclCommInitRank(&n->comm, nranks, u, rank);
    if (ncclSuccess != r) {
        LOCO_ERROR("ncclCommInitRank: %s", ncclGetErrorString(r));
        n->comm = NULL;
        loco_cuda_nccl_free(n);
        return loco_error_set(err, LOCO_ERR_CUDA,
                              "NCCL communicator of %d GPUs (rank %d) did not form: %s", nranks,
                              rank, ncclGetErrorString(r));
    }
    *nccl = n;
    return LOCO_OK;
}

extern "C" void loco_cuda_nccl_free(loco_cuda_nccl *nccl)
{
    if (NULL == nccl) {
        return;
    }
    if (NULL != nccl->stream) {
        cudaStreamSynchronize(nccl->stream);
    }
    if (NULL != nccl->comm) {
        ncclCommDestroy(nccl->comm);
    }
    if (NULL != nccl->compute_done) {
        cudaEventDestroy(nccl->compute_done);
    }
    if (NULL != nccl->comm_done) {
        cudaEventDestroy(nccl->comm_done);
    }
    if (NULL != nccl->stream) {
        cudaStreamDestroy(nccl->stream);
    }
    free(nccl);
}

extern "C" loco_status loco_cuda_nccl_allreduce_mean(loco_cuda_nccl *nccl, float *buf, size_t n,
                                                     loco_error *err)
{
    /* the wait captures the event as recorded now, so one event serves every call */
    cudaError_t e = cudaEventRecord(nccl->compute_done, nccl->ctx->stream);
    if (cudaSuccess == e) {
        e = cudaStreamWaitEvent(nccl->stream, nccl->compute_done, 0);
    }
    if (cudaSuccess != e) {
        return cuda_status(err, e, "ordering the allreduce after the compute stream");
    }
    NCCL_TRY(ncclAllReduce(buf, buf, n, ncclFloat, ncclAvg, nccl->comm, nccl->stream), err);
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_nccl_join(loco_cuda_nccl *nccl, loco_error *err)
{
    cudaError_t e = cudaEventRecord(nccl->comm_done, nccl->stream);
    if (cudaSuccess == e) {
        e = cudaStreamWaitEvent(nccl->ctx->stream, nccl->comm_done, 0);
    }
    return cudaSuccess == e ? LOCO_OK : cuda_status(err, e, "waiting for the allreduces");
}

#else /* CUDA without NCCL */

static loco_status no_nccl(loco_error *err)
{
    return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                          "loco was built without NCCL: set NCCL_HOME (or install libnccl-dev) "
                          "and rebuild to use several GPUs in one worker");
}

extern "C" bool loco_cuda_nccl_built(void) { return false; }

extern "C" loco_status loco_cuda_nccl_unique_id(uint8_t id[LOCO_NCCL_ID_BYTES], loco_error *err)
{
    (void)id;
    return no_nccl(err);
}

extern "C" loco_status loco_cuda_nccl_init(loco_cuda_nccl **nccl, loco_cuda_ctx *ctx,
                                           const uint8_t id[LOCO_NCCL_ID_BYTES], int nranks,
                                           int rank, loco_error *err)
{
    (void)ctx, (void)id, (void)nranks, (void)rank;
    *nccl = NULL;
    return no_nccl(err);
}

extern "C" void loco_cuda_nccl_free(loco_cuda_nccl *nccl) { (void)nccl; }

extern "C" loco_status loco_cuda_nccl_allreduce_mean(loco_cuda_nccl *nccl, float *buf, size_t n,
                                                     loco_error *err)
{
    (void)nccl, (void)buf, (void)n;
    return no_nccl(err);
}

extern "C" loco_status loco_cuda_nccl_join(loco_cuda_nccl *nccl, loco_error *err)
{
    (void)nccl;
    return no_nccl(err);
}

#endif /* LOCO_HAVE_NCCL */
