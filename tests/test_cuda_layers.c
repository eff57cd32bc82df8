/* tests/test_cuda_layers.c — every GPU layer (cuda/layers_cuda.h) against its CPU twin
 * (src/layers.h) on random data: encoder, LayerNorm, matmul (bias, residual, GELU epilogues),
 * GELU, flash attention (MHA/GQA/MQA, head sizes 64 and 128, T not a multiple of the tile, K/V
 * gradients started or accumulated) and the plain attention kernels, fused cross-entropy, sums.
 * Inputs are rounded to bf16 first, so the CPU sees exactly what the GPU sees; tolerances are
 * those of bf16 outputs (~1e-2) or of fp32 sums in another order (~1e-5). Skips without a GPU.
 */
#include <criterion/criterion.h>

#if LOCO_HAVE_CUDA

#include "src/layers.h"
#include "tests/cuda_testutil.h"

#include <omp.h>
#include <string.h>

static loco_cuda_blas make_blas(void)
{
    loco_cuda_blas b;
    cr_assert_eq(cublasLtCreate(&b.lt), CUBLAS_STATUS_SUCCESS);
    b.workspace_bytes = (size_t)32 << 20;
    b.workspace = dev_alloc(b.workspace_bytes);
    return b;
}

static void free_blas(loco_cuda_blas *b)
{
    cublasLtDestroy(b->lt);
    cudaFree(b->workspace);
}

static loco_gemm_workspace make_ws(void)
{
    loco_gemm_workspace ws;
    cr_assert_eq(loco_gemm_workspace_init(&ws, omp_get_max_threads()), LOCO_OK);
    return ws;
}

/* ---------------------------------------------------------------------------------------------
 * Encoder */

Test(cuda_layers, encoder_forward_and_backward_match_cpu)
{
    SKIP_WITHOUT_GPU();
    enum { B = 3, T = 37, C = 256, V = 50 };
    int N = B * T;
    float *wte = rand_bf16_values((size_t)V * C, -1, 1, 1);
    float *wpe = rand_bf16_values((size_t)T * C, -1, 1, 2);
    uint16_t tokens[B * T];
    loco_rng rng;
    loco_rng_init(&rng, 3, 0);
    for (int i = 0; i < N; i++) {
        tokens[i] = (uint16_t)loco_rng_below(&rng, V / 2); /* repeats: groups of several rows */
    }
    float *ref = host_zeros((size_t)N * C), *got = host_zeros((size_t)N * C);
    loco_encoder_forward(ref, tokens, wte, wpe, B, T, C);
    uint16_t *d_tokens = (uint16_t *)dev_alloc(sizeof tokens);
    CUDA_OK(cudaMemcpy(d_tokens, tokens, sizeof tokens, cudaMemcpyHostToDevice));
    loco_bf16 *d_wte = dev_bf16(wte, (size_t)V * C), *d_wpe = dev_bf16(wpe, (size_t)T * C);
    loco_bf16 *d_out = (loco_bf16 *)dev_alloc((size_t)N * C * 2);
    LOCO_OK_(loco_encoder_forward_cuda(d_out, d_tokens, d_wte, d_wpe, B, T, C, 0));
    get_bf16(got, d_out, (size_t)N * C);
    expect_close("encoder forward", got, ref, (size_t)N * C, 8e-3);

    /* backward: dwte, dwpe start non-zero (+=) */
    float *dout = rand_bf16_values((size_t)N * C, -1, 1, 4);
    float *dwte_ref = rand_bf16_values((size_t)V * C, -1, 1, 5);
    float *dwpe_ref = rand_bf16_values((size_t)T * C, -1, 1, 6);
    float *d_dwte = dev_f32(dwte_ref, (size_t)V * C), *d_dwpe = dev_f32(dwpe_ref, (size_t)T * C);
    loco_encoder_backward(dwte_ref, dwpe_ref, dout, tokens, B, T, C);
    int *plan = malloc(loco_encoder_plan_ints(N) * sizeof(int));
    int *counts = malloc(V * sizeof(int));
    int groups = loco_encoder_plan_build(plan, counts, tokens, N, V);
    cr_assert(groups > 0 && groups <= V / 2);
    int *d_plan = dev_alloc(loco_encoder_plan_ints(N) * sizeof(int));
    CUDA_OK(cudaMemcpy(d_plan, plan, loco_encoder_plan_ints(N) * sizeof(int),
                       cudaMemcpyHostToDevice));
    LOCO_OK_(loco_encoder_backward_cuda(d_dwte, d_dwpe, dev_bf16(dout, (size_t)N * C), d_plan,
                                        groups, B, T, C, 0));
    float *g_dwte = host_zeros((size_t)V * C), *g_dwpe = host_zeros((size_t)T * C);
    get_f32(g_dwte, d_dwte, (size_t)V * C);
    get_f32(g_dwpe, d_dwpe, (size_t)T * C);
    expect_close("encoder backward dwte", g_dwte, dwte_ref, (size_t)V * C, 1e-5);
    expect_close("encoder backward dwpe", g_dwpe, dwpe_ref, (size_t)T * C, 1e-5);
}

/* ---------------------------------------------------------------------------------------------
 * LayerNorm */

static void check_layernorm(int N, int C, uint64_t seed)
{
    float *x = rand_bf16_values((size_t)N * C, -2, 3, seed);
    float *w = rand_bf16_values(C, 0.5f, 1.5f, seed + 1), *b = rand_bf16_values(C, -1, 1, seed + 2);
    float *ref = host_zeros((size_t)N * C), *got = host_zeros((size_t)N * C);
    float *mean = host_zeros(N), *rstd = host_zeros(N), *gmean = host_zeros(N),
          *grstd = host_zeros(N);
    loco_layernorm_forward(ref, mean, rstd, x, w, b, N, C);
    loco_bf16 *d_x = dev_bf16(x, (size_t)N * C), *d_w = dev_bf16(w, C), *d_b = dev_bf16(b, C);
    loco_bf16 *d_out = (loco_bf16 *)dev_alloc((size_t)N * C * 2);
    float *d_mean = dev_alloc(N * 4), *d_rstd = dev_alloc(N * 4);
    LOCO_OK_(loco_layernorm_forward_cuda(d_out, d_mean, d_rstd, d_x, d_w, d_b, N, C, 0));
    get_bf16(got, d_out, (size_t)N * C);
    get_f32(gmean, d_mean, N);
    get_f32(grstd, d_rstd, N);
    expect_close("layernorm forward out", got, ref, (size_t)N * C, 8e-3);
    expect_close("layernorm forward mean", gmean, mean, N, 1e-5);
    expect_close("layernorm forward rstd", grstd, rstd, N, 1e-5);

    float *dout = rand_bf16_values((size_t)N * C, -1, 1, seed + 3);
    float *dinp = rand_bf16_values((size_t)N * C, -1, 1, seed + 4); /* += into it */
    float *dw = rand_bf16_values(C, -1, 1, seed + 5), *db = rand_bf16_values(C, -1, 1, seed + 6);
    loco_bf16 *d_dinp = dev_bf16(dinp, (size_t)N * C);
    float *d_dw = dev_f32(dw, C), *d_db = dev_f32(db, C);
    float *scratch = dev_alloc(loco_colsum_scratch_floats(N, C) * 4);
    loco_layernorm_backward(dinp, dw, db, dout, x, w, gmean, grstd, N, C);
    LOCO_OK_(loco_layernorm_backward_cuda(d_dinp, d_dw, d_db, scratch,
                                          dev_bf16(dout, (size_t)N * C), d_x, d_w, d_mean, d_rstd,
                                          N, C, 0));
    get_bf16(got, d_dinp, (size_t)N * C);
    expect_close("layernorm backward dinp (+=)", got, dinp, (size_t)N * C, 1e-2);
    float *g = host_zeros(C);
    get_f32(g, d_dw, C);
    expect_close("layernorm backward dweight (+=)", g, dw, C, 1e-4);
    get_f32(g, d_db, C);
    expect_close("layernorm backward dbias (+=)", g, db, C, 1e-4);
}

Test(cuda_layers, layernorm_matches_cpu)
{
    SKIP_WITHOUT_GPU();
    check_layernorm(203, 256, 10);  /* rows not a multiple of the 8 a block takes */
    check_layernorm(1000, 768, 20); /* three 8-wide vectors a lane */
    check_layernorm(100, 1280, 30); /* wider than the register-resident kernels */
}

/* ---------------------------------------------------------------------------------------------
 * Matmul */

Test(cuda_layers, matmul_forward_backward_match_cpu)
{
    SKIP_WITHOUT_GPU();
    enum { N = 200, C = 256, OC = 768 };
    loco_cuda_blas blas = make_blas();
    loco_gemm_workspace ws = make_ws();
    float *inp = rand_bf16_values((size_t)N * C, -1, 1, 30);
    float *w = rand_bf16_values((size_t)OC * C, -0.1f, 0.1f, 31);
    float *bias = rand_bf16_values(OC, -1, 1, 32);
    float *res = rand_bf16_values((size_t)N * OC, -1, 1, 33);
    float *ref = host_zeros((size_t)N * OC), *got = host_zeros((size_t)N * OC);
    loco_bf16 *d_inp = dev_bf16(inp, (size_t)N * C), *d_w = dev_bf16(w, (size_t)OC * C);
    loco_bf16 *d_bias = dev_bf16(bias, OC), *d_res = dev_bf16(res, (size_t)N * OC);
    loco_bf16 *d_out = (loco_bf16 *)dev_alloc((size_t)N * OC * 2);

    loco_matmul_forward(&ws, ref, inp, w, bias, res, N, C, OC);
    LOCO_OK_(loco_matmul_forward_cuda(&blas, d_out, d_inp, d_w, d_bias, d_res, N, C, OC, 0));
    get_bf16(got, d_out, (size_t)N * OC);
    expect_close("matmul forward + bias + residual", got, ref, (size_t)N * OC, 1e-2);

    loco_matmul_forward(&ws, ref, inp, w, NULL, NULL, N, C, OC);
    LOCO_OK_(loco_matmul_forward_cuda(&blas, d_out, d_inp, d_w, NULL, NULL, N, C, OC, 0));
    get_bf16(got, d_out, (size_t)N * OC);
    expect_close("matmul forward, no bias", got, ref, (size_t)N * OC, 1e-2);

    /* fused GELU: pre = inp w^T + b, out = gelu(pre) */
    float *ref_gelu = host_zeros((size_t)N * OC);
    loco_matmul_forward(&ws, ref, inp, w, bias, NULL, N, C, OC);
    loco_gelu_forward(ref_gelu, ref, (size_t)N * OC);
    loco_bf16 *d_pre = (loco_bf16 *)dev_alloc((size_t)N * OC * 2);
    LOCO_OK_(loco_matmul_gelu_forward_cuda(&blas, d_out, d_pre, d_inp, d_w, d_bias, N, C, OC, 0));
    get_bf16(got, d_pre, (size_t)N * OC);
    expect_close("matmul+gelu: pre-activation", got, ref, (size_t)N * OC, 1e-2);
    get_bf16(got, d_out, (size_t)N * OC);
    expect_close("matmul+gelu: gelu output", got, ref_gelu, (size_t)N * OC, 1e-2);

    /* backward: dinp =, dweight +=, dbias += */
    float *dout = rand_bf16_values((size_t)N * OC, -1, 1, 34);
    float *dinp = host_zeros((size_t)N * C), *gdinp = host_zeros((size_t)N * C);
    float *dw = rand_bf16_values((size_t)OC * C, -1, 1, 35), *db = rand_bf16_values(OC, -1, 1, 36);
    float *d_dw = dev_f32(dw, (size_t)OC * C), *d_db = dev_f32(db, OC);
    loco_bf16 *d_dinp = (loco_bf16 *)dev_alloc((size_t)N * C * 2);
    float *scratch = dev_alloc(loco_colsum_scratch_floats(N, OC) * 4);
    loco_matmul_backward(&ws, dinp, dw, db, dout, inp, w, N, C, OC);
    LOCO_OK_(loco_matmul_backward_cuda(&blas, d_dinp, d_dw, d_db, scratch,
                                       dev_bf16(dout, (size_t)N * OC), d_inp, d_w, N, C, OC, 0));
    get_bf16(gdinp, d_dinp, (size_t)N * C);
    expect_close("matmul backward dinp", gdinp, dinp, (size_t)N * C, 1e-2);
    float *g = host_zeros((size_t)OC * C);
    get_f32(g, d_dw, (size_t)OC * C);
    expect_close("matmul backward dweight (+=, fp32)", g, dw, (size_t)OC * C, 1e-4);
    get_f32(g, d_db, OC);
    expect_close("matmul backward dbias (+=)", g, db, OC, 1e-4);
    free_blas(&blas);
    loco_gemm_workspace_free(&ws);
}

/* ---------------------------------------------------------------------------------------------
 * GELU */

Test(cuda_layers, gelu_matches_cpu)
{
    SKIP_WITHOUT_GPU();
    size_t n = 100003; /* a tail that is not a multiple of 8 */
    float *x = rand_bf16_values(n, -6, 6, 40), *dout = rand_bf16_values(n, -1, 1, 41);
    float *ref = host_zeros(n), *got = host_zeros(n);
    loco_bf16 *d_x = dev_bf16(x, n), *d_out = (loco_bf16 *)dev_alloc(n * 2);
    loco_gelu_forward(ref, x, n);
    LOCO_OK_(loco_gelu_forward_cuda(d_out, d_x, n, 0));
    get_bf16(got, d_out, n);
    expect_close("gelu forward", got, ref, n, 8e-3);
    loco_gelu_backward(ref, x, dout, n);
    loco_bf16 *d_d = dev_bf16(dout, n);
    LOCO_OK_(loco_gelu_backward_cuda(d_d, d_x, d_d, n, 0)); /* in place, like the model */
    get_bf16(got, d_d, n);
    expect_close("gelu backward (in place)", got, ref, n, 8e-3);
}

/* ---------------------------------------------------------------------------------------------
 * Attention: the model's layout, [Q | K | V] rows of stride C + 2 KV; dK, dV into the same
 * layout, started (zero_dkv) or added to. */

typedef enum { FLASH, PLAIN } att_path;

/* The defaults (tiles NULL) or one tile variant of the flash kernels. */
static void check_attention_tiles(int B, int T, int NH, int NKV, int hs, bool zero_dkv,
                                  att_path path, const loco_flash_tiles *tiles, uint64_t seed);

static void check_attention(int B, int T, int NH, int NKV, int hs, bool zero_dkv, att_path path,
                            uint64_t seed)
{
    check_attention_tiles(B, T, NH, NKV, hs, zero_dkv, path, NULL, seed);
}

static void check_attention_tiles(int B, int T, int NH, int NKV, int hs, bool zero_dkv,
                                  att_path path, const loco_flash_tiles *tiles, uint64_t seed)
{
    int C = NH * hs, KV = NKV * hs, S = C + 2 * KV, N = B * T;
    char what[128];
    char name[32];
    if (NULL != tiles) {
        snprintf(name, sizeof name, "flash %d/%d/%d", tiles->forward_mt, tiles->dq_mt,
                 tiles->dkv_blocks);
    } else {
        snprintf(name, sizeof name, "%s", FLASH == path ? "flash" : "plain");
    }
    loco_gemm_workspace ws = make_ws();
    float *qkv = rand_bf16_values((size_t)N * S, -2, 2, seed);
    float *dout = rand_bf16_values((size_t)N * C, -1, 1, seed + 1);
    float *dqkv = rand_bf16_values((size_t)N * S, -1, 1, seed + 2); /* dK, dV prefill */
    float *out = host_zeros((size_t)N * C), *att = host_zeros((size_t)B * NH * T * T);
    float *scratch = host_zeros((size_t)ws.threads * loco_attention_scratch_floats(T, hs));
    loco_attention_forward(&ws, scratch, out, att, qkv, S, qkv + C, qkv + C + KV, S, B, T, NH, NKV,
                           hs);
    float *dqkv_ref = malloc((size_t)N * S * sizeof(float));
    memcpy(dqkv_ref, dqkv, (size_t)N * S * sizeof(float));
    loco_attention_backward(&ws, scratch, dqkv_ref, S, dqkv_ref + C, dqkv_ref + C + KV, zero_dkv,
                            dout, att, qkv, S, qkv + C, qkv + C + KV, S, B, T, NH, NKV, hs);
    /* reference log-sum-exp in double */
    float *lse_ref = host_zeros((size_t)B * NH * T);
    double scale = 1.0 / sqrt((double)hs);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            int g = h / (NH / NKV);
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY, sum = 0.0, s[1024];
                for (int j = 0; j <= t; j++) {
                    double dot = 0.0;
                    for (int d = 0; d < hs; d++) {
                        dot += (double)qkv[((size_t)b * T + t) * S + h * hs + d] *
                               qkv[((size_t)b * T + j) * S + C + g * hs + d];
                    }
                    s[j] = dot * scale;
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j <= t; j++) {
                    sum += exp(s[j] - mx);
                }
                lse_ref[((size_t)b * NH + h) * T + t] = (float)(mx + log(sum));
            }
        }
    }

    loco_bf16 *d_qkv = dev_bf16(qkv, (size_t)N * S);
    loco_bf16 *d_out = (loco_bf16 *)dev_alloc((size_t)N * C * 2);
    float *d_lse = dev_alloc((size_t)B * NH * T * 4);
    if (FLASH == path && NULL != tiles) {
        LOCO_OK_(loco_attention_forward_tiles_cuda(tiles, d_out, d_lse, d_qkv, S, d_qkv + C,
                                                   d_qkv + C + KV, S, B, T, NH, NKV, hs, 0));
    } else if (FLASH == path) {
        LOCO_OK_(loco_attention_forward_cuda(d_out, d_lse, d_qkv, S, d_qkv + C, d_qkv + C + KV, S,
                                             B, T, NH, NKV, hs, 0));
    } else {
        LOCO_OK_(loco_attention_forward_plain_cuda(d_out, d_lse, d_qkv, S, d_qkv + C,
                                                   d_qkv + C + KV, S, B, T, NH, NKV, hs, 0));
    }
    float *got = host_zeros((size_t)N * S);
    get_bf16(got, d_out, (size_t)N * C);
    snprintf(what, sizeof what, "%s fwd B%d T%d H%d KV%d hs%d: out", name, B, T, NH, NKV, hs);
    expect_close(what, got, out, (size_t)N * C, 1e-2);
    get_f32(got, d_lse, (size_t)B * NH * T);
    snprintf(what, sizeof what, "%s fwd B%d T%d H%d KV%d hs%d: lse", name, B, T, NH, NKV, hs);
    expect_close(what, got, lse_ref, (size_t)B * NH * T, 1e-4);

    loco_bf16 *d_dqkv = dev_bf16(dqkv, (size_t)N * S);
    float *d_scratch = dev_alloc(loco_attention_scratch_floats_cuda(B, T, NH) * 4);
    if (FLASH == path && NULL != tiles) {
        LOCO_OK_(loco_attention_backward_tiles_cuda(
            tiles, d_scratch, d_dqkv, S, d_dqkv + C, d_dqkv + C + KV, zero_dkv,
            dev_bf16(dout, (size_t)N * C), d_out, d_lse, d_qkv, S, d_qkv + C, d_qkv + C + KV, S,
            B, T, NH, NKV, hs, 0));
    } else if (FLASH == path) {
        LOCO_OK_(loco_attention_backward_cuda(d_scratch, d_dqkv, S, d_dqkv + C, d_dqkv + C + KV,
                                              zero_dkv, dev_bf16(dout, (size_t)N * C), d_out,
                                              d_lse, d_qkv, S, d_qkv + C, d_qkv + C + KV, S, B, T,
                                              NH, NKV, hs, 0));
    } else {
        LOCO_OK_(loco_attention_backward_plain_cuda(
            d_scratch, d_dqkv, S, d_dqkv + C, d_dqkv + C + KV, zero_dkv,
            dev_bf16(dout, (size_t)N * C), d_out, d_lse, d_qkv, S, d_qkv + C, d_qkv + C + KV, S,
            B, T, NH, NKV, hs, 0));
    }
    get_bf16(got, d_dqkv, (size_t)N * S);
    /* compare the Q, K and V column blocks separately */
    const char *part[3] = {"dq", zero_dkv ? "dk (=)" : "dk (+=)", zero_dkv ? "dv (=)" : "dv (+=)"};
    int col0[3] = {0, C, C + KV}, cols[3] = {C, KV, KV};
    for (int p = 0; p < 3; p++) {
        float *a = host_zeros((size_t)N * cols[p]), *r = host_zeros((size_t)N * cols[p]);
        for (int n = 0; n < N; n++) {
            memcpy(a + (size_t)n * cols[p], got + (size_t)n * S + col0[p], cols[p] * sizeof(float));
            memcpy(r + (size_t)n * cols[p], dqkv_ref + (size_t)n * S + col0[p],
                   cols[p] * sizeof(float));
        }
        snprintf(what, sizeof what, "%s bwd B%d T%d H%d KV%d hs%d: %s", name, B, T, NH, NKV, hs,
                 part[p]);
        expect_close(what, a, r, (size_t)N * cols[p], 2e-2);
        free(a);
        free(r);
    }
    loco_gemm_workspace_free(&ws);
}

Test(cuda_layers, flash_attention_mha_matches_cpu)
{
    SKIP_WITHOUT_GPU();
    check_attention(2, 100, 4, 4, 64, true, FLASH, 50); /* T = 64 + 36: a partial tile */
    check_attention(1, 200, 2, 2, 64, false, FLASH, 51);
}

Test(cuda_layers, flash_attention_gqa_mqa_match_cpu)
{
    SKIP_WITHOUT_GPU();
    check_attention(2, 130, 4, 2, 64, true, FLASH, 60);  /* GQA */
    check_attention(2, 96, 4, 1, 64, false, FLASH, 61);  /* MQA, dK/dV added to */
    check_attention(1, 64, 4, 1, 64, true, FLASH, 62);   /* exactly one tile */
    check_attention(1, 17, 2, 1, 64, true, FLASH, 63);   /* shorter than a tile */
}

Test(cuda_layers, flash_attention_head_size_128_matches_cpu)
{
    SKIP_WITHOUT_GPU();
    check_attention(2, 150, 2, 1, 128, true, FLASH, 70);
    check_attention(1, 70, 4, 2, 128, false, FLASH, 71);
}

Test(cuda_layers, flash_attention_tile_variants_match_cpu)
{
    SKIP_WITHOUT_GPU();
    for (int fm = 1; fm <= 2; fm++) {
        for (int dm = 1; dm <= 2; dm++) {
            for (int kb = 2; kb <= 3; kb++) {
                loco_flash_tiles tiles = {fm, dm, kb};
                check_attention_tiles(2, 150, 4, 2, 64, 3 == kb, FLASH, &tiles,
                                      200 + 4 * fm + 2 * dm + kb);
            }
        }
    }
}

Test(cuda_layers, plain_attention_matches_cpu)
{
    SKIP_WITHOUT_GPU();
    check_attention(2, 50, 4, 2, 32, true, PLAIN, 80);  /* the path for head sizes != 64, 128 */
    check_attention(1, 70, 4, 4, 64, false, PLAIN, 81); /* the on-device reference at 64 */
    check_attention(2, 40, 4, 2, 16, true, FLASH, 82);  /* hs 16 routes to plain */
}

/* ---------------------------------------------------------------------------------------------
 * Cross-entropy, fused with its gradient */

static void check_crossentropy(int N, int V, uint64_t seed)
{
    float *logits = rand_bf16_values((size_t)N * V, -4, 4, seed);
    uint16_t *targets = malloc(N * sizeof(uint16_t));
    loco_rng rng;
    loco_rng_init(&rng, seed, 1);
    for (int i = 0; i < N; i++) {
        targets[i] = (uint16_t)loco_rng_below(&rng, (uint32_t)V);
    }
    float *losses = host_zeros(N), *lse = host_zeros(N), *glosses = host_zeros(N),
          *glse = host_zeros(N);
    loco_bf16 *d_logits = dev_bf16(logits, (size_t)N * V);
    loco_crossentropy_forward(losses, lse, logits, targets, N, V);
    float dloss = 1.0f / N;
    loco_crossentropy_backward(logits, lse, targets, dloss, N, V); /* logits := dlogits */
    uint16_t *d_targets = dev_alloc(N * sizeof(uint16_t));
    CUDA_OK(cudaMemcpy(d_targets, targets, N * sizeof(uint16_t), cudaMemcpyHostToDevice));
    float *d_losses = dev_alloc(N * 4), *d_lse = dev_alloc(N * 4);
    LOCO_OK_(loco_crossentropy_forward_cuda(d_losses, d_lse, d_logits, d_targets, dloss, N, V, 0));
    get_f32(glosses, d_losses, N);
    get_f32(glse, d_lse, N);
    char what[96];
    snprintf(what, sizeof what, "crossentropy N%d V%d: losses", N, V);
    expect_close(what, glosses, losses, N, 1e-5);
    snprintf(what, sizeof what, "crossentropy N%d V%d: lse", N, V);
    expect_close(what, glse, lse, N, 1e-5);
    float *got = host_zeros((size_t)N * V);
    get_bf16(got, d_logits, (size_t)N * V);
    snprintf(what, sizeof what, "crossentropy N%d V%d: dlogits", N, V);
    expect_close(what, got, logits, (size_t)N * V, 8e-3);
}

Test(cuda_layers, fused_crossentropy_matches_cpu)
{
    SKIP_WITHOUT_GPU();
    check_crossentropy(64, 50304, 90); /* GPT-2's padded vocabulary: 16-byte rows */
    check_crossentropy(33, 1001, 91);  /* a row length that is not a multiple of 8 */
}

/* ---------------------------------------------------------------------------------------------
 * Fixed-order sums and casts */

Test(cuda_layers, sum_matches_double_and_is_deterministic)
{
    SKIP_WITHOUT_GPU();
    size_t n = 1000003;
    float *x = rand_bf16_values(n, -1, 1, 100);
    double want = 0.0, want_sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        want += x[i];
        want_sq += (double)x[i] * x[i];
    }
    float *d_x = dev_f32(x, n);
    double *d_out = dev_alloc(2 * sizeof(double));
    double *scratch = dev_alloc(loco_sum_scratch_doubles() * sizeof(double));
    double got[2], again[2];
    LOCO_OK_(loco_sum_cuda(d_out, scratch, d_x, n, false, 0));
    LOCO_OK_(loco_sum_cuda(d_out + 1, scratch, d_x, n, true, 0));
    CUDA_OK(cudaMemcpy(got, d_out, sizeof got, cudaMemcpyDeviceToHost));
    LOCO_OK_(loco_sum_cuda(d_out, scratch, d_x, n, false, 0));
    LOCO_OK_(loco_sum_cuda(d_out + 1, scratch, d_x, n, true, 0));
    CUDA_OK(cudaMemcpy(again, d_out, sizeof again, cudaMemcpyDeviceToHost));
    cr_assert(fabs(got[0] - want) <= 1e-9 * (1.0 + fabs(want)), "sum %.17g, want %.17g", got[0],
              want);
    cr_assert(fabs(got[1] - want_sq) <= 1e-12 * want_sq, "sum of squares %.17g, want %.17g",
              got[1], want_sq);
    cr_assert(got[0] == again[0] && got[1] == again[1], "sums differ between runs");

    loco_bf16 *d_h = (loco_bf16 *)dev_alloc(n * 2);
    LOCO_OK_(loco_bf16_from_f32_cuda(d_h, d_x, n, 0));
    float *h = host_zeros(n);
    get_bf16(h, d_h, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert(h[i] == loco_bf16_to_f32(loco_f32_to_bf16(x[i])), "cast differs at %zu", i);
    }
}

#else /* !LOCO_HAVE_CUDA */

Test(cuda_layers, skipped_without_cuda) { cr_skip_test("skipped: loco was built without CUDA"); }

#endif
