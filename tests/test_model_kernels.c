/* tests/test_model_kernels.c — every optimized CPU kernel (src/gemm.c, src/layers.c) against its
 * naive reference (loco_sgemm_naive, src/model_ref.c in double), and thread-count independence.
 */
#include "src/gemm.h"
#include "src/layers.h"
#include "src/model_ref.h"
#include "tests/model_testutil.h"

#include <criterion/criterion.h>
#include <omp.h>
#include <stdlib.h>

static float *rand_floats(size_t n, uint64_t seed, float scale)
{
    float *p = malloc((n > 0 ? n : 1) * sizeof(float));
    cr_assert_not_null(p);
    loco_rng rng;
    loco_rng_init(&rng, seed, 1);
    for (size_t i = 0; i < n; i++) {
        p[i] = scale * (2.0f * loco_rng_uniform(&rng) - 1.0f);
    }
    return p;
}

static double *to_double(const float *p, size_t n)
{
    double *d = malloc((n > 0 ? n : 1) * sizeof(double));
    cr_assert_not_null(d);
    for (size_t i = 0; i < n; i++) {
        d[i] = p[i];
    }
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * GEMM */

typedef struct gemm_case {
    int M, N, K;
    int trans_a, trans_b; /* operands stored transposed */
    int pad;              /* extra row stride of C */
    bool accumulate;
} gemm_case;

static void run_gemm_case(const gemm_case *gc, int variant)
{
    int M = gc->M, N = gc->N, K = gc->K;
    float *a = rand_floats((size_t)M * K + 1, 11 + M, 1.0f);
    float *b = rand_floats((size_t)K * N + 1, 13 + N, 1.0f);
    ptrdiff_t ldc = N + gc->pad;
    float *c = rand_floats((size_t)M * ldc + 1, 17, 1.0f);
    float *want = malloc(((size_t)M * ldc + 1) * sizeof(float));
    memcpy(want, c, ((size_t)M * ldc + 1) * sizeof(float));
    ptrdiff_t a_rs = gc->trans_a ? 1 : K, a_cs = gc->trans_a ? M : 1;
    ptrdiff_t b_rs = gc->trans_b ? 1 : N, b_cs = gc->trans_b ? K : 1;
    loco_sgemm_naive(M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, want, ldc, gc->accumulate);
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, 2), LOCO_OK);
    if (0 == variant) {
        loco_sgemm(&ws, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, gc->accumulate);
    } else if (1 == variant) {
        loco_sgemm_serial(ws.buf, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, gc->accumulate);
    } else {
        loco_sgemm_serial_portable(ws.buf, M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc,
                                   gc->accumulate);
    }
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < ldc; j++) {
            float got = c[i * ldc + j], exp = want[i * ldc + j];
            if (j >= N) { /* padding must be untouched */
                cr_assert_eq(loco_f32_bits(got), loco_f32_bits(exp), "padding written at %d,%d", i,
                             j);
                continue;
            }
            cr_assert(fabsf(got - exp) <= 1e-5f * (float)(K + 1),
                      "variant %d M=%d N=%d K=%d ta=%d tb=%d acc=%d: C[%d][%d] = %g, want %g",
                      variant, M, N, K, gc->trans_a, gc->trans_b, gc->accumulate, i, j, got, exp);
        }
    }
    cr_assert_eq(loco_f32_bits(c[(size_t)M * ldc]), loco_f32_bits(want[(size_t)M * ldc]),
                 "wrote past the end of C");
    loco_gemm_workspace_free(&ws);
    free(a);
    free(b);
    free(c);
    free(want);
}

Test(gemm, matches_naive_on_every_layout_and_edge)
{
    const int dims[][3] = {{1, 1, 1},     {6, 16, 1},    {7, 17, 3},     {5, 15, 300},
                           {13, 40, 257}, {150, 33, 64}, {64, 1030, 20}, {200, 200, 513}};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        for (int ta = 0; ta < 2; ta++) {
            for (int tb = 0; tb < 2; tb++) {
                for (int acc = 0; acc < 2; acc++) {
                    for (int variant = 0; variant < 3; variant++) {
                        gemm_case gc = {dims[d][0], dims[d][1], dims[d][2], ta, tb, 3 * acc, acc};
                        run_gemm_case(&gc, variant);
                    }
                }
            }
        }
    }
}

Test(gemm, bias_and_residual_addends_on_every_split)
{
    const int dims[][3] = {{300, 70, 600}, {40, 700, 300}, {7, 9, 0}, {13, 40, 5}};
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, 2), LOCO_OK);
    omp_set_num_threads(2);
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int M = dims[d][0], N = dims[d][1], K = dims[d][2];
        ptrdiff_t ldc = N + 2, ldr = N + 5;
        float *a = rand_floats((size_t)M * K + 1, 1, 1.0f),
              *b = rand_floats((size_t)K * N + 1, 2, 1.0f);
        float *bias = rand_floats(N, 3, 1.0f), *res = rand_floats((size_t)M * ldr, 4, 1.0f);
        float *c = rand_floats((size_t)M * ldc, 5, 1.0f), *want = calloc((size_t)M * ldc, 4);
        loco_sgemm_naive(M, N, K, a, K, 1, b, N, 1, want, ldc, false);
        loco_gemm_epilogue epi = {bias, res, ldr, NULL, NULL};
        loco_sgemm_ex(&ws, M, N, K, a, K, 1, b, N, 1, c, ldc, false, &epi);
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < N; j++) {
                float exp = want[i * ldc + j] + bias[j] + res[i * ldr + j];
                cr_assert(fabsf(c[i * ldc + j] - exp) <= 1e-5f * (K + 2),
                          "M=%d N=%d K=%d [%d][%d]: %g want %g", M, N, K, i, j, c[i * ldc + j],
                          exp);
            }
        }
        free(a);
        free(b);
        free(bias);
        free(res);
        free(c);
        free(want);
    }
    loco_gemm_workspace_free(&ws);
}

Test(gemm, prepacked_b_prefixes_match_naive_and_serial)
{
    int PK = 300, PN = 45; /* packed depth and width */
    float *b = rand_floats((size_t)PK * PN, 7, 1.0f);
    float *packed = malloc(loco_gemm_packed_floats(PK, PN) * sizeof(float));
    loco_gemm_pack(PK, PN, b, 1, PK, packed); /* B(k, n) = b[n*PK + k]: stored transposed */
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, 1), LOCO_OK);
    const int cases[][4] = {{7, 45, 300, 0}, {13, 16, 17, 1}, {6, 33, 1, 0}, {20, 45, 260, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int M = cases[i][0], N = cases[i][1], K = cases[i][2], ta = cases[i][3];
        float *a = rand_floats((size_t)M * K, 8, 1.0f);
        ptrdiff_t a_rs = ta ? 1 : K, a_cs = ta ? M : 1;
        float *c = rand_floats((size_t)M * N, 9, 1.0f), *want = malloc((size_t)M * N * 4);
        float *serial = malloc((size_t)M * N * 4);
        memcpy(want, c, (size_t)M * N * 4);
        memcpy(serial, c, (size_t)M * N * 4);
        loco_sgemm_naive(M, N, K, a, a_rs, a_cs, b, 1, PK, want, N, true);
        loco_sgemm_serial(ws.buf, M, N, K, a, a_rs, a_cs, b, 1, PK, serial, N, true);
        loco_sgemm_prepacked(ws.buf, M, N, K, a, a_rs, a_cs, packed, PK, c, N, true);
        cr_assert_arr_eq(c, serial, (size_t)M * N * 4,
                         "prepacked differs from serial (M=%d N=%d K=%d)", M, N, K);
        for (int j = 0; j < M * N; j++) {
            cr_assert(fabsf(c[j] - want[j]) <= 1e-5f * (K + 1), "M=%d N=%d K=%d: %g vs %g", M, N, K,
                      c[j], want[j]);
        }
        free(a);
        free(c);
        free(want);
        free(serial);
    }
    loco_gemm_workspace_free(&ws);
    free(b);
    free(packed);
}

Test(gemm, zero_depth_clears_or_keeps)
{
    gemm_case overwrite = {4, 5, 0, 0, 0, 0, false};
    gemm_case keep = {4, 5, 0, 0, 0, 0, true};
    run_gemm_case(&overwrite, 0);
    run_gemm_case(&keep, 0);
}

Test(gemm, bit_identical_across_thread_counts)
{
    int M = 301, N = 77, K = 600;
    float *a = rand_floats((size_t)M * K, 1, 1.0f), *b = rand_floats((size_t)K * N, 2, 1.0f);
    float *c1 = calloc((size_t)M * N, sizeof(float)), *c2 = calloc((size_t)M * N, sizeof(float));
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, 2), LOCO_OK);
    omp_set_num_threads(1);
    loco_sgemm(&ws, M, N, K, a, K, 1, b, N, 1, c1, N, false);
    omp_set_num_threads(2);
    loco_sgemm(&ws, M, N, K, a, K, 1, b, N, 1, c2, N, false);
    cr_assert_arr_eq(c1, c2, (size_t)M * N * sizeof(float));
    /* also when the split is by columns (N > M) */
    loco_sgemm(&ws, N, M, K, b, 1, N, a, 1, K, c2, M, false);
    omp_set_num_threads(1);
    loco_sgemm(&ws, N, M, K, b, 1, N, a, 1, K, c1, M, false);
    cr_assert_arr_eq(c1, c2, (size_t)M * N * sizeof(float));
    loco_gemm_workspace_free(&ws);
    free(a);
    free(b);
    free(c1);
    free(c2);
}

/* ---------------------------------------------------------------------------------------------
 * Vector math */

Test(vmath, exp_matches_libm)
{
    enum { n = 20000 };
    static float x[n], y[n];
    for (int i = 0; i < n; i++) {
        x[i] = -87.0f + 175.0f * (float)i / (float)(n - 1);
    }
    loco_vexp(y, x, n);
    for (int i = 0; i < n; i++) {
        double want = exp((double)x[i]);
        cr_assert(fabs(y[i] - want) <= 4e-7 * want, "exp(%g) = %g, want %g", x[i], y[i], want);
    }
    float tiny[3] = {-100.0f, -87.5f, -1e30f}, out[3];
    loco_vexp(out, tiny, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(out[i], 0.0f, "exp(%g) flushes to 0", tiny[i]);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Layers against the double references */

#define CHECK_CLOSE(got, want, n, tol, what)                                                       \
    do {                                                                                           \
        size_t worst_;                                                                             \
        double e_ = norm_err_fd((got), (want), (n), 1e-6, &worst_);                                \
        cr_assert(e_ <= (tol), "%s: normalised error %.3g at %zu (%g vs %g)", (what), e_, worst_,  \
                  (double)(got)[worst_], (want)[worst_]);                                          \
    } while (0)

Test(layers, layernorm_forward_backward)
{
    int N = 37, C = 96;
    float *x = rand_floats((size_t)N * C, 3, 2.0f), *w = rand_floats(C, 4, 1.0f);
    float *bias = rand_floats(C, 5, 1.0f), *dy = rand_floats((size_t)N * C, 6, 1.0f);
    float *out = calloc((size_t)N * C, 4), *mean = calloc(N, 4), *rstd = calloc(N, 4);
    float *dx = rand_floats((size_t)N * C, 7, 1.0f), *dw = rand_floats(C, 8, 1.0f);
    float *db = rand_floats(C, 9, 1.0f);
    double *xd = to_double(x, (size_t)N * C), *wd = to_double(w, C), *bd = to_double(bias, C);
    double *dyd = to_double(dy, (size_t)N * C), *dxd = to_double(dx, (size_t)N * C);
    double *dwd = to_double(dw, C), *dbd = to_double(db, C);
    double *outd = calloc((size_t)N * C, 8), *meand = calloc(N, 8), *rstdd = calloc(N, 8);
    loco_layernorm_forward(out, mean, rstd, x, w, bias, N, C);
    loco_ref_layernorm_forward(outd, meand, rstdd, xd, wd, bd, N, C);
    CHECK_CLOSE(out, outd, (size_t)N * C, 1e-6, "layernorm out");
    CHECK_CLOSE(rstd, rstdd, N, 1e-6, "layernorm rstd");
    loco_layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, N, C);
    loco_ref_layernorm_backward(dxd, dwd, dbd, dyd, xd, wd, meand, rstdd, N, C);
    CHECK_CLOSE(dx, dxd, (size_t)N * C, 1e-5, "layernorm dinp (accumulated)");
    CHECK_CLOSE(dw, dwd, C, 1e-5, "layernorm dweight");
    CHECK_CLOSE(db, dbd, C, 1e-5, "layernorm dbias");
}

Test(layers, matmul_forward_backward_with_bias_and_residual)
{
    int N = 50, C = 70, OC = 45;
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, 2), LOCO_OK);
    float *x = rand_floats((size_t)N * C, 1, 1.0f), *w = rand_floats((size_t)OC * C, 2, 1.0f);
    float *b = rand_floats(OC, 3, 1.0f), *res = rand_floats((size_t)N * OC, 4, 1.0f);
    float *dy = rand_floats((size_t)N * OC, 5, 1.0f), *out = calloc((size_t)N * OC, 4);
    float *dx = rand_floats((size_t)N * C, 6, 1.0f), *dw = rand_floats((size_t)OC * C, 7, 1.0f);
    float *db = rand_floats(OC, 8, 1.0f);
    double *xd = to_double(x, (size_t)N * C), *wd = to_double(w, (size_t)OC * C);
    double *bd = to_double(b, OC), *dyd = to_double(dy, (size_t)N * OC);
    double *outd = calloc((size_t)N * OC, 8), *dxd = calloc((size_t)N * C, 8);
    double *dwd = to_double(dw, (size_t)OC * C), *dbd = to_double(db, OC);
    loco_matmul_forward(&ws, out, x, w, b, res, N, C, OC);
    loco_ref_matmul_forward(outd, xd, wd, bd, N, C, OC);
    for (size_t i = 0; i < (size_t)N * OC; i++) {
        outd[i] += res[i];
    }
    CHECK_CLOSE(out, outd, (size_t)N * OC, 1e-6, "matmul out");
    loco_matmul_backward(&ws, dx, dw, db, dy, x, w, N, C, OC);
    loco_ref_matmul_backward(dxd, dwd, dbd, dyd, xd, wd, N, C, OC);
    CHECK_CLOSE(dx, dxd, (size_t)N * C, 1e-6, "matmul dinp (overwritten)");
    CHECK_CLOSE(dw, dwd, (size_t)OC * C, 1e-6, "matmul dweight (accumulated)");
    CHECK_CLOSE(db, dbd, OC, 1e-6, "matmul dbias (accumulated)");
    loco_gemm_workspace_free(&ws);
}

Test(layers, matmul_with_fused_gelu)
{
    int N = 200, C = 40, OC = 90; /* big enough for the parallel split */
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, 2), LOCO_OK);
    float *x = rand_floats((size_t)N * C, 1, 1.0f), *w = rand_floats((size_t)OC * C, 2, 1.0f);
    float *b = rand_floats(OC, 3, 1.0f), *out = calloc((size_t)N * OC, 4);
    float *act = calloc((size_t)N * OC, 4);
    double *xd = to_double(x, (size_t)N * C), *wd = to_double(w, (size_t)OC * C);
    double *bd = to_double(b, OC), *outd = calloc((size_t)N * OC, 8);
    double *actd = calloc((size_t)N * OC, 8);
    loco_matmul_gelu_forward(&ws, out, act, x, w, b, N, C, OC);
    loco_ref_matmul_forward(outd, xd, wd, bd, N, C, OC);
    loco_ref_gelu_forward(actd, outd, (size_t)N * OC);
    CHECK_CLOSE(out, outd, (size_t)N * OC, 1e-6, "fc pre-activation");
    CHECK_CLOSE(act, actd, (size_t)N * OC, 1e-6, "fused gelu");
    /* backward of the next layer (OC -> C2) whose input is act = gelu(out) */
    int C2 = 30;
    float *w2 = rand_floats((size_t)C2 * OC, 4, 1.0f), *dy = rand_floats((size_t)N * C2, 5, 1.0f);
    float *dinp = calloc((size_t)N * OC, 4), *dw2 = calloc((size_t)C2 * OC, 4);
    float *db2 = calloc(C2, 4);
    double *w2d = to_double(w2, (size_t)C2 * OC), *dyd = to_double(dy, (size_t)N * C2);
    double *dactd = calloc((size_t)N * OC, 8), *dpred = calloc((size_t)N * OC, 8);
    double *dw2d = calloc((size_t)C2 * OC, 8), *db2d = calloc(C2, 8);
    loco_matmul_backward_gelu(&ws, dinp, dw2, db2, dy, act, w2, out, N, OC, C2);
    loco_ref_matmul_backward(dactd, dw2d, db2d, dyd, actd, w2d, N, OC, C2);
    loco_ref_gelu_backward(dpred, outd, dactd, (size_t)N * OC);
    CHECK_CLOSE(dinp, dpred, (size_t)N * OC, 1e-5, "dinp through the fused gelu");
    CHECK_CLOSE(dw2, dw2d, (size_t)C2 * OC, 1e-5, "dweight");
    CHECK_CLOSE(db2, db2d, C2, 1e-5, "dbias");
    loco_gemm_workspace_free(&ws);
}

static void check_attention(int B, int T, int NH, int NKV, int hs)
{
    int C = NH * hs, KV = NKV * hs, q_stride = C + 5, kv_stride = 2 * KV + 3;
    size_t N = (size_t)B * T;
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, 2), LOCO_OK);
    float *q = rand_floats(N * q_stride, 1, 1.5f), *kv = rand_floats(N * kv_stride, 2, 1.5f);
    float *dout = rand_floats(N * C, 3, 1.0f), *out = calloc(N * C, 4);
    float *att = calloc((size_t)B * NH * T * T, 4);
    float *dq = rand_floats(N * q_stride, 4, 1.0f), *dkv = rand_floats(N * kv_stride, 5, 1.0f);
    float *scratch = calloc(2 * loco_attention_scratch_floats(T, hs), 4);
    double *qd = to_double(q, N * q_stride), *kvd = to_double(kv, N * kv_stride);
    double *doutd = to_double(dout, N * C), *outd = calloc(N * C, 8);
    double *attd = calloc((size_t)B * NH * T * T, 8), *dqd = calloc(N * q_stride, 8);
    double *dkvd = to_double(dkv, N * kv_stride);
    loco_attention_forward(&ws, scratch, out, att, q, q_stride, kv, kv + KV, kv_stride, B, T, NH,
                           NKV, hs);
    loco_ref_attention_forward(outd, attd, qd, q_stride, kvd, kvd + KV, kv_stride, B, T, NH, NKV,
                               hs);
    CHECK_CLOSE(out, outd, N * C, 2e-6, "attention out");
    CHECK_CLOSE(att, attd, (size_t)B * NH * T * T, 2e-6, "attention probabilities");
    loco_attention_backward(&ws, scratch, dq, q_stride, dkv, dkv + KV, false, dout, att, q,
                            q_stride, kv, kv + KV, kv_stride, B, T, NH, NKV, hs);
    loco_ref_attention_backward(dqd, q_stride, dkvd, dkvd + KV, doutd, attd, qd, q_stride, kvd,
                                kvd + KV, kv_stride, B, T, NH, NKV, hs);
    for (size_t n = 0; n < N; n++) { /* only the query columns are dQ; the rest is untouched */
        for (int j = C; j < q_stride; j++) {
            dqd[n * q_stride + j] = dq[n * q_stride + j];
        }
    }
    CHECK_CLOSE(dq, dqd, N * q_stride, 1e-5, "attention dq");
    CHECK_CLOSE(dkv, dkvd, N * kv_stride, 1e-5, "attention dk, dv (accumulated)");
    /* zero_dkv: the K/V head columns restart from 0, the other columns are untouched */
    float *dkv2 = rand_floats(N * kv_stride, 5, 1.0f);
    double *dkvd2 = calloc(N * kv_stride, 8);
    loco_ref_attention_backward(dqd, q_stride, dkvd2, dkvd2 + KV, doutd, attd, qd, q_stride, kvd,
                                kvd + KV, kv_stride, B, T, NH, NKV, hs);
    for (size_t n = 0; n < N; n++) {
        for (int j = 2 * KV; j < kv_stride; j++) {
            dkvd2[n * kv_stride + j] = dkv2[n * kv_stride + j];
        }
    }
    loco_attention_backward(&ws, scratch, dq, q_stride, dkv2, dkv2 + KV, true, dout, att, q,
                            q_stride, kv, kv + KV, kv_stride, B, T, NH, NKV, hs);
    CHECK_CLOSE(dkv2, dkvd2, N * kv_stride, 1e-5, "attention dk, dv (overwritten)");
    loco_gemm_workspace_free(&ws);
}

Test(layers, attention_mha_gqa_mqa_and_long_rows)
{
    check_attention(2, 16, 4, 4, 16);
    check_attention(2, 16, 4, 2, 16);
    check_attention(3, 9, 4, 1, 8);
    check_attention(1, 130, 2, 1, 32); /* several causal row blocks */
}

Test(layers, gelu_forward_backward)
{
    size_t n = 10007;
    float *x = rand_floats(n, 1, 6.0f), *dy = rand_floats(n, 2, 1.0f);
    float *y = calloc(n, 4), *dx = calloc(n, 4);
    double *xd = to_double(x, n), *dyd = to_double(dy, n), *yd = calloc(n, 8), *dxd = calloc(n, 8);
    loco_gelu_forward(y, x, n);
    loco_ref_gelu_forward(yd, xd, n);
    CHECK_CLOSE(y, yd, n, 1e-6, "gelu");
    loco_gelu_backward(dx, x, dy, n);
    loco_ref_gelu_backward(dxd, xd, dyd, n);
    CHECK_CLOSE(dx, dxd, n, 1e-6, "gelu backward");
    float big[4] = {-30.0f, 30.0f, -1e6f, 1e6f}, gb[4];
    loco_gelu_forward(gb, big, 4);
    cr_assert(fabsf(gb[0]) < 1e-20f && gb[1] == 30.0f && fabsf(gb[2]) < 1e-20f && gb[3] == 1e6f,
              "gelu saturates: %g %g %g %g", gb[0], gb[1], gb[2], gb[3]);
}

Test(layers, crossentropy_and_encoder)
{
    int N = 21, V = 300, T = 7, C = 24;
    float *logits = rand_floats((size_t)N * V, 1, 8.0f);
    double *ld = to_double(logits, (size_t)N * V), *dld = calloc((size_t)N * V, 8);
    uint16_t targets[21];
    random_tokens(targets, N, V, 5);
    float losses[21], lse[21];
    double lossesd[21];
    double mean = loco_crossentropy_forward(losses, lse, logits, targets, N, V);
    double meand = loco_ref_crossentropy_forward(lossesd, ld, targets, N, V);
    cr_assert(fabs(mean - meand) <= 1e-6 * fabs(meand), "loss %g vs %g", mean, meand);
    loco_crossentropy_backward(logits, lse, targets, 1.0f / N, N, V);
    loco_ref_crossentropy_backward(dld, ld, targets, 1.0 / N, N, V);
    CHECK_CLOSE(logits, dld, (size_t)N * V, 1e-6, "dlogits");

    int B = N / T, Vt = 11;
    uint16_t tokens[21];
    random_tokens(tokens, N, Vt, 6);
    float *wte = rand_floats((size_t)Vt * C, 2, 1.0f), *wpe = rand_floats((size_t)T * C, 3, 1.0f);
    float *out = calloc((size_t)N * C, 4), *dout = rand_floats((size_t)N * C, 4, 1.0f);
    float *dwte = calloc((size_t)Vt * C, 4), *dwpe = calloc((size_t)T * C, 4);
    double *wted = to_double(wte, (size_t)Vt * C), *wped = to_double(wpe, (size_t)T * C);
    double *outd = calloc((size_t)N * C, 8), *doutd = to_double(dout, (size_t)N * C);
    double *dwted = calloc((size_t)Vt * C, 8), *dwped = calloc((size_t)T * C, 8);
    loco_encoder_forward(out, tokens, wte, wpe, B, T, C);
    loco_ref_encoder_forward(outd, tokens, wted, wped, B, T, C);
    CHECK_CLOSE(out, outd, (size_t)N * C, 1e-7, "encoder");
    loco_encoder_backward(dwte, dwpe, dout, tokens, B, T, C);
    loco_ref_encoder_backward(dwted, dwped, doutd, tokens, B, T, C);
    CHECK_CLOSE(dwte, dwted, (size_t)Vt * C, 1e-6, "dwte");
    CHECK_CLOSE(dwpe, dwped, (size_t)T * C, 1e-6, "dwpe");
}
