/* cuda/matmul.cu — nn.Linear forward and backward through cuBLASLt (see layers_cuda.h).
 *
 * cuBLASLt is column-major; a row-major (rows, cols) matrix is a column-major (cols, rows) one,
 * so every product below is written for the transposes:
 *     forward   out^T (OC, N)    = W^T (OC <- C) · inp^T (C, N)     A = W (op T), B = inp
 *     dinp      dinp^T (C, N)    = W (C, OC) · dout^T (OC, N)       A = W, B = dout
 *     dweight   dweight^T (C, OC) += inp^T (C, N) · dout (N, OC)    A = inp, B = dout (op T)
 * Bias, residual and GELU are fused into the epilogue (D = act(A·B + bias) + beta C, with C the
 * residual); weight gradients accumulate in fp32 (beta = 1 on an fp32 D).
 */
#include "cuda/cuda_impl.h"

namespace {

/* The descriptors of one cuBLASLt call, destroyed on every path out. */
struct lt_call {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t a = NULL, b = NULL, c = NULL, d = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    ~lt_call()
    {
        if (NULL != pref) {
            cublasLtMatmulPreferenceDestroy(pref);
        }
        if (NULL != d) {
            cublasLtMatrixLayoutDestroy(d);
        }
        if (NULL != c) {
            cublasLtMatrixLayoutDestroy(c);
        }
        if (NULL != b) {
            cublasLtMatrixLayoutDestroy(b);
        }
        if (NULL != a) {
            cublasLtMatrixLayoutDestroy(a);
        }
        if (NULL != op) {
            cublasLtMatmulDescDestroy(op);
        }
    }
};

/* One product: D (m, n) = epilogue(op(A) (m, k) · op(B) (k, n) [+ bias]) + beta C, column-major,
 * A and B bf16. D is bf16 or fp32 (d_type). c_in: the C matrix (same type and layout as D), or
 * NULL; beta is 1 with a C matrix and 0 otherwise. */
struct lt_args {
    void *d;
    cudaDataType_t d_type;
    const bf16 *a, *b;
    bool trans_a, trans_b;
    int m, n, k;
    const void *c_in;
    const bf16 *bias;
    cublasLtEpilogue_t epilogue;
    void *aux; /* GELU's pre-activation output (bf16, leading dimension m) */
};

loco_status lt_matmul(const loco_cuda_blas *blas, const lt_args &p, cudaStream_t stream)
{
    lt_call call;
    CUBLAS_TRY(cublasLtMatmulDescCreate(&call.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_TRY(
        cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_TRY(
        cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t epilogue = p.epilogue;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                              sizeof epilogue));
    if (NULL != p.bias) {
        const void *bias = p.bias;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                  &bias, sizeof bias));
        cudaDataType_t bias_type = CUDA_R_16BF;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                  &bias_type, sizeof bias_type));
    }
    if (NULL != p.aux) {
        void *aux = p.aux;
        int64_t ld = p.m;
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(
            call.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
        CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                  &ld, sizeof ld));
    }
    /* A is stored (k, m) when transposed, else (m, k); likewise B (n, k) or (k, n). */
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.a, CUDA_R_16BF, p.trans_a ? p.k : p.m,
                                          p.trans_a ? p.m : p.k, p.trans_a ? p.k : p.m));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.b, CUDA_R_16BF, p.trans_b ? p.n : p.k,
                                          p.trans_b ? p.k : p.n, p.trans_b ? p.n : p.k));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.c, p.d_type, p.m, p.n, p.m));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.d, p.d_type, p.m, p.n, p.m));
    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&call.pref));
    size_t ws = blas->workspace_bytes;
    CUBLAS_TRY(cublasLtMatmulPreferenceSetAttribute(
        call.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    CUBLAS_TRY(cublasLtMatmulAlgoGetHeuristic(blas->lt, call.op, call.a, call.b, call.c, call.d,
                                              call.pref, 1, &heuristic, &found));
    if (0 == found) {
        LOCO_ERROR("cuBLASLt has no algorithm for m=%d n=%d k=%d transa=%d transb=%d epilogue=%d",
                   p.m, p.n, p.k, (int)p.trans_a, (int)p.trans_b, (int)p.epilogue);
        return LOCO_ERR_CUDA;
    }
    float alpha = 1.0f, beta = NULL != p.c_in ? 1.0f : 0.0f;
    const void *c = NULL != p.c_in ? p.c_in : p.d;
    CUBLAS_TRY(cublasLtMatmul(blas->lt, call.op, &alpha, p.a, call.a, p.b, call.b, &beta, c,
                              call.c, p.d, call.d, &heuristic.algo, blas->workspace, ws, stream));
    return LOCO_OK;
}

/* out^T (OC, N) = W^T · inp^T, bf16 out: what both forward variants start from. */
lt_args forward_args(void *out, const loco_bf16 *inp, const loco_bf16 *weight, int N, int C, int OC)
{
    lt_args p = {};
    p.d = out;
    p.d_type = CUDA_R_16BF;
    p.a = as_bf16(weight);
    p.trans_a = true;
    p.b = as_bf16(inp);
    p.m = OC;
    p.n = N;
    p.k = C;
    return p;
}

} /* namespace */

extern "C" loco_status loco_matmul_forward_cuda(const loco_cuda_blas *blas, loco_bf16 *out,
                                                const loco_bf16 *inp, const loco_bf16 *weight,
                                                const loco_bf16 *bias, const loco_bf16 *residual,
                                                int N, int C, int OC, cudaStream_t stream)
{
    lt_args p = forward_args(out, inp, weight, N, C, OC);
    p.c_in = residual;
    p.bias = as_bf16(bias);
    p.epilogue = NULL != bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    return lt_matmul(blas, p, stream);
}

extern "C" loco_status loco_matmul_gelu_forward_cuda(const loco_cuda_blas *blas, loco_bf16 *out,
                                                     loco_bf16 *pre, const loco_bf16 *inp,
                                                     const loco_bf16 *weight,
                                                     const loco_bf16 *bias, int N, int C, int OC,
                                                     cudaStream_t stream)
{
    lt_args p = forward_args(out, inp, weight, N, C, OC);
    p.bias = as_bf16(bias);
    p.aux = pre;
    p.epilogue = NULL != bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    return lt_matmul(blas, p, stream);
}

extern "C" loco_status loco_matmul_backward_cuda(const loco_cuda_blas *blas, loco_bf16 *dinp,
                                                 float *dweight, float *dbias, float *scratch,
                                                 const loco_bf16 *dout, const loco_bf16 *inp,
                                                 const loco_bf16 *weight, int N, int C, int OC,
                                                 cudaStream_t stream)
{
    if (NULL != dinp) {
        lt_args p = {};
        p.d = dinp;
        p.d_type = CUDA_R_16BF;
        p.a = as_bf16(weight);
        p.b = as_bf16(dout);
        p.m = C;
        p.n = N;
        p.k = OC;
        p.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
        LOCO_TRY(lt_matmul(blas, p, stream));
    }
    lt_args p = {};
    p.d = dweight;
    p.d_type = CUDA_R_32F;
    p.a = as_bf16(inp);
    p.b = as_bf16(dout);
    p.trans_b = true;
    p.m = C;
    p.n = OC;
    p.k = N;
    p.c_in = dweight;
    p.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    LOCO_TRY(lt_matmul(blas, p, stream));
    if (NULL != dbias) {
        LOCO_TRY(loco_bias_backward_cuda(dbias, scratch, as_bf16(dout), N, OC, stream));
    }
    return LOCO_OK;
}
