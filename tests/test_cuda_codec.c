/* tests/test_cuda_codec.c — the quantizers encoded on the GPU (loco_codec_encode_cuda) give the
 * very bytes of the CPU encoder (loco_codec_encode) for the same input, codec and context: every
 * family (max-min at 1..8 bits, QSGD, FP4, ternary with and without clipping, sign), stochastic
 * and nearest rounding, buckets that do and do not divide the input, the entropy stage; top-k
 * (radix select) at densities 1e-4..1, with heavy ties at the threshold, against the CPU codec
 * and the naive reference; DCT-chunk top-k on vectors and matrices (64 x 64, 48 x 50, 7 x 1
 * and 1 x 1 chunks; 1..all coefficients kept); NaN input and unsupported requests fail as on
 * the CPU. Skips without a GPU; public headers only.
 */
#include "compress/codec.h"
#include "compress/topk.h"
#include "cuda/cuda.h"
#include "tests/cuda_skip.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 100003 }; /* not a multiple of any bucket below */

typedef struct gpu_fixture {
    loco_cuda_ctx *ctx;
    float *host, *dev;
    uint8_t *dev_payload;
    size_t payload_cap;
} gpu_fixture;

/* Gaussian-ish values with exact zeros, negative zeros and a bucket of huge range. */
static void fixture_init(gpu_fixture *f, size_t n)
{
    loco_error err = {0};
    cr_assert_eq(loco_cuda_ctx_init(&f->ctx, 0, &err), LOCO_OK, "%s", err.msg);
    f->host = malloc(n * sizeof(float));
    loco_rng rng;
    loco_rng_init(&rng, 42, 1);
    for (size_t i = 0; i < n; i++) {
        f->host[i] = loco_rng_normal(&rng) * (i / 512 % 7 == 3 ? 1e3f : 1e-2f);
    }
    for (size_t i = 0; i < n; i += 997) {
        f->host[i] = i % 2 ? 0.0f : -0.0f;
    }
    cr_assert_eq(loco_cuda_alloc((void **)&f->dev, n * sizeof(float), &err), LOCO_OK);
    cr_assert_eq(loco_cuda_upload(f->ctx, f->dev, f->host, n * sizeof(float), &err), LOCO_OK);
    f->payload_cap = 3 * n * sizeof(float) + 16384; /* >= loco_codec_cuda_scratch_bytes */
    cr_assert_eq(loco_cuda_alloc((void **)&f->dev_payload, f->payload_cap, &err), LOCO_OK);
}

static void fixture_free(gpu_fixture *f)
{
    loco_cuda_free(f->dev);
    loco_cuda_free(f->dev_payload);
    loco_cuda_ctx_free(f->ctx);
    free(f->host);
}

/* Encode on both and compare every byte; names the first difference. rows 0: n elements with
 * no shape (a NULL codec state); else a rows x (n / rows) tensor (the CPU gets a state of that
 * shape, the GPU loco_codec_encode_cuda_shaped). */
static void check_same_shaped(gpu_fixture *f, const loco_codec_params *p, size_t rows, size_t n,
                              const char *what)
{
    loco_codec *codec = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_codec_init(&codec, p, &err), LOCO_OK, "%s: %s", what, err.msg);
    size_t cap = loco_codec_bound(codec, n);
    cr_assert(loco_codec_cuda_scratch_bytes(codec, n) <= f->payload_cap, "%s: scratch", what);
    uint8_t *cpu = malloc(cap), *gpu = malloc(cap);
    loco_codec_ctx ctx = {1234567, 17, 3, 5};
    size_t cpu_len = 0, gpu_len = 0;
    loco_codec_state *state = NULL;
    if (rows > 0) {
        cr_assert_eq(loco_codec_state_init(&state, codec, rows, n / rows, &err), LOCO_OK, "%s",
                     err.msg);
    }
    cr_assert_eq(loco_codec_encode_ex(codec, state, f->host, n, &ctx, cpu, cap, &cpu_len, &err),
                 LOCO_OK, "%s: CPU: %s", what, err.msg);
    loco_codec_state_free(state);
    cr_assert_eq(loco_codec_encode_cuda_shaped(codec, f->ctx, f->dev, rows > 0 ? rows : 1,
                                               rows > 0 ? n / rows : n, &ctx, f->dev_payload,
                                               gpu, cap, &gpu_len, &err),
                 LOCO_OK, "%s: GPU: %s", what, err.msg);
    size_t at = 0;
    while (at < cpu_len && at < gpu_len && cpu[at] == gpu[at]) {
        at++;
    }
    printf("  %-40s %8zu bytes, %s\n", what, cpu_len,
           cpu_len == gpu_len && at == cpu_len ? "identical" : "DIFFERENT");
    cr_assert(cpu_len == gpu_len && at == cpu_len,
              "%s: GPU message differs from the CPU's at byte %zu of %zu (GPU %zu bytes): "
              "cpu %02x gpu %02x",
              what, at, cpu_len, gpu_len, at < cpu_len ? cpu[at] : 0,
              at < gpu_len ? gpu[at] : 0);
    free(cpu);
    free(gpu);
    loco_codec_free(codec);
}

static void check_same(gpu_fixture *f, const loco_codec_params *p, size_t n, const char *what)
{
    check_same_shaped(f, p, 0, n, what);
}

static loco_codec_params params(loco_codec_id id, int bits, int bucket, bool stochastic)
{
    loco_codec_params p = loco_codec_params_default(id);
    p.bits = bits;
    p.bucket = bucket;
    p.stochastic = stochastic;
    return p;
}

Test(cuda_codec, maxmin_bytes_match_cpu)
{
    SKIP_WITHOUT_GPU();
    gpu_fixture f;
    fixture_init(&f, N);
    char what[96];
    const int bits[] = {1, 2, 3, 4, 5, 8}, buckets[] = {512, 100, 4000, 7};
    for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++) {
        for (size_t k = 0; k < sizeof buckets / sizeof buckets[0]; k++) {
            for (int st = 0; st < 2; st++) {
                snprintf(what, sizeof what, "maxmin %d bits, bucket %d, %s", bits[b], buckets[k],
                         st ? "stochastic" : "nearest");
                loco_codec_params p = params(LOCO_CODEC_MAXMIN, bits[b], buckets[k], st);
                check_same(&f, &p, N, what);
            }
        }
    }
    fixture_free(&f);
}

/* Buckets whose minimum is a zero, -0 and +0 mixed: the GPU's lanes meet them in another order
 * than the CPU's SIMD reduction, and both must write the minimum as +0. */
Test(cuda_codec, maxmin_signed_zero_minimum_matches_cpu)
{
    SKIP_WITHOUT_GPU();
    gpu_fixture f;
    fixture_init(&f, N);
    for (size_t i = 0; i < N; i++) { /* zero minima; the first 1024 values all zero (whole
                                       * buckets of mixed signed zeros: a zero unit) */
        f.host[i] = i % 5 < 2 || i < 1024 ? (i % 3 ? -0.0f : 0.0f) : fabsf(f.host[i]);
    }
    loco_error err = {0};
    cr_assert_eq(loco_cuda_upload(f.ctx, f.dev, f.host, N * sizeof(float), &err), LOCO_OK);
    const int buckets[] = {7, 512};
    for (size_t k = 0; k < 2; k++) {
        for (int st = 0; st < 2; st++) {
            char what[96];
            snprintf(what, sizeof what, "maxmin signed zeros, bucket %d, %s", buckets[k],
                     st ? "stochastic" : "nearest");
            loco_codec_params p = params(LOCO_CODEC_MAXMIN, 4, buckets[k], st);
            check_same(&f, &p, N, what);
        }
    }
    fixture_free(&f);
}

Test(cuda_codec, qsgd_fp4_ternary_sign_bytes_match_cpu)
{
    SKIP_WITHOUT_GPU();
    gpu_fixture f;
    fixture_init(&f, N);
    char what[96];
    for (int st = 0; st < 2; st++) {
        const char *r = st ? "stochastic" : "nearest";
        for (int bits = 2; bits <= 8; bits += 2) {
            snprintf(what, sizeof what, "qsgd %d bits, bucket 512, %s", bits, r);
            loco_codec_params p = params(LOCO_CODEC_QSGD, bits, 512, st);
            check_same(&f, &p, N, what);
        }
        snprintf(what, sizeof what, "fp4, bucket 512, %s", r);
        loco_codec_params p = params(LOCO_CODEC_FP4, 4, 512, st);
        check_same(&f, &p, N, what);
        snprintf(what, sizeof what, "fp4, bucket 33, %s", r);
        p = params(LOCO_CODEC_FP4, 4, 33, st);
        check_same(&f, &p, N, what);
        for (int clip = 0; clip < 2; clip++) {
            snprintf(what, sizeof what, "ternary, bucket 512, clip %s, %s", clip ? "2.5" : "off",
                     r);
            p = params(LOCO_CODEC_TERNARY, 0, 512, st);
            p.clip_sigma = clip ? 2.5f : 0.0f;
            check_same(&f, &p, N, what);
        }
        snprintf(what, sizeof what, "ternary, bucket 13, %s", r);
        p = params(LOCO_CODEC_TERNARY, 0, 13, st);
        check_same(&f, &p, N, what);
    }
    loco_codec_params p = params(LOCO_CODEC_SIGN, 1, 512, false);
    check_same(&f, &p, N, "sign, bucket 512");
    p = params(LOCO_CODEC_SIGN, 1, 4000, false);
    check_same(&f, &p, N, "sign, bucket 4000");
    p = params(LOCO_CODEC_MAXMIN, 4, 512, false);
    p.entropy = true;
    check_same(&f, &p, N, "maxmin 4 bits + entropy stage");
    p = params(LOCO_CODEC_MAXMIN, 4, 512, true);
    check_same(&f, &p, 300, "maxmin, message shorter than a bucket");
    fixture_free(&f);
}

Test(cuda_codec, bad_input_and_unsupported_requests_fail)
{
    SKIP_WITHOUT_GPU();
    gpu_fixture f;
    fixture_init(&f, N);
    loco_error err = {0};
    loco_codec *codec = NULL;
    loco_codec_params p = params(LOCO_CODEC_MAXMIN, 4, 512, true);
    cr_assert_eq(loco_codec_init(&codec, &p, &err), LOCO_OK);
    size_t cap = loco_codec_bound(codec, N), len = 0;
    uint8_t *out = malloc(cap);
    float nan = NAN;
    cr_assert_eq(loco_cuda_upload(f.ctx, f.dev + 70000, &nan, sizeof nan, &err), LOCO_OK);
    cr_assert_eq(loco_codec_encode_cuda(codec, f.ctx, f.dev, N, NULL, f.dev_payload, out, cap,
                                        &len, &err),
                 LOCO_ERR_NONFINITE);
    loco_codec_free(codec);
    loco_error_clear(&err);
    p = params(LOCO_CODEC_SIGN, 1, 0, false); /* a whole-message bucket: the CPU's */
    cr_assert_eq(loco_codec_init(&codec, &p, &err), LOCO_OK);
    cr_assert_eq(loco_codec_encode_cuda(codec, f.ctx, f.dev, N, NULL, f.dev_payload, out, cap,
                                        &len, &err),
                 LOCO_ERR_UNSUPPORTED);
    cr_assert(NULL != strstr(err.msg, "bucket"), "%s", err.msg);
    loco_codec_free(codec);
    loco_error_clear(&err);
    p = loco_codec_params_default(LOCO_CODEC_DGC);
    cr_assert_eq(loco_codec_init(&codec, &p, &err), LOCO_OK);
    cr_assert_eq(loco_codec_encode_cuda(codec, f.ctx, f.dev, N, NULL, f.dev_payload, out, cap,
                                        &len, &err),
                 LOCO_ERR_UNSUPPORTED);
    loco_codec_free(codec);
    loco_error_clear(&err);
    /* ARS draws are the CPU's (no AES unit on the GPU); nearest rounding needs none */
    p = params(LOCO_CODEC_TERNARY, 0, 512, true);
    p.rng = LOCO_CODEC_RNG_ARS;
    cr_assert(!loco_codec_cuda_encodes(&p, N));
    cr_assert_eq(loco_codec_init(&codec, &p, &err), LOCO_OK);
    cr_assert_eq(loco_codec_encode_cuda(codec, f.ctx, f.dev, N, NULL, f.dev_payload, out, cap,
                                        &len, &err),
                 LOCO_ERR_UNSUPPORTED);
    cr_assert(NULL != strstr(err.msg, "codec.rng"), "%s", err.msg);
    loco_codec_free(codec);
    p.stochastic = false;
    cr_assert(loco_codec_cuda_encodes(&p, N));
    free(out);
    fixture_free(&f);
}

Test(cuda_codec, topk_bytes_match_cpu)
{
    SKIP_WITHOUT_GPU();
    gpu_fixture f;
    fixture_init(&f, N);
    char what[96];
    const float densities[] = {0.0001f, 0.001f, 0.01f, 0.1f, 0.5f, 1.0f};
    for (size_t d = 0; d < sizeof densities / sizeof densities[0]; d++) {
        for (int entropy = 0; entropy < 2; entropy++) {
            snprintf(what, sizeof what, "topk density %g%s", (double)densities[d],
                     entropy ? " + entropy stage" : "");
            loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TOPK);
            p.density = densities[d];
            p.entropy = entropy;
            check_same(&f, &p, N, what);
        }
    }
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TOPK);
    p.density = 0.3f;
    check_same(&f, &p, 1, "topk of one element");
    check_same(&f, &p, 7, "topk of 7 elements");
    check_same(&f, &p, 4096 * 3 + 1, "topk over 3 tiles + 1");
    /* heavy ties: values from {0, +-1, +-2, +-3}, so the threshold magnitude is shared by
     * thousands of elements and the lowest indices must win */
    for (size_t i = 0; i < N; i++) {
        f.host[i] = (float)((int)(i * 2654435761u >> 7) % 7 - 3);
    }
    loco_error err = {0};
    cr_assert_eq(loco_cuda_upload(f.ctx, f.dev, f.host, N * sizeof(float), &err), LOCO_OK);
    const float tied[] = {0.05f, 0.3f, 0.6f, 0.95f};
    for (size_t d = 0; d < sizeof tied / sizeof tied[0]; d++) {
        snprintf(what, sizeof what, "topk density %g, heavy ties", (double)tied[d]);
        p.density = tied[d];
        check_same(&f, &p, N, what);
    }
    fixture_free(&f);
}

/* The selection itself against the naive reference (sort everything), on a million elements
 * with ties, and NaN refused. */
Test(cuda_codec, topk_select_matches_naive_reference)
{
    SKIP_WITHOUT_GPU();
    const size_t n = (1u << 20) + 3;
    gpu_fixture f;
    fixture_init(&f, n);
    for (size_t i = 0; i < n; i += 3) {
        f.host[i] = (float)((int)(i % 1000) - 500) * 1e-3f; /* many repeated magnitudes */
    }
    loco_error err = {0};
    cr_assert_eq(loco_cuda_upload(f.ctx, f.dev, f.host, n * sizeof(float), &err), LOCO_OK);
    const size_t ks[] = {1, 1000, 77777, n / 2, n};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        size_t k = ks[t];
        uint32_t *want_idx = malloc(k * sizeof(uint32_t)), *idx = malloc(k * sizeof(uint32_t));
        float *want_val = malloc(k * sizeof(float)), *val = malloc(k * sizeof(float));
        cr_assert_eq(loco_topk_select_naive(f.host, n, k, want_idx, want_val), LOCO_OK);
        uint32_t *dev_idx = (uint32_t *)f.dev_payload;
        float *dev_val = (float *)(f.dev_payload + 4 * k);
        cr_assert(8 * k + loco_cuda_topk_scratch_bytes(n) <= f.payload_cap);
        cr_assert_eq(loco_cuda_topk_select(f.ctx, f.dev, n, k, dev_idx, dev_val,
                                           f.dev_payload + 8 * k, &err),
                     LOCO_OK, "%s", err.msg);
        cr_assert_eq(loco_cuda_download(f.ctx, idx, dev_idx, k * sizeof(uint32_t), &err),
                     LOCO_OK);
        cr_assert_eq(loco_cuda_download(f.ctx, val, dev_val, k * sizeof(float), &err), LOCO_OK);
        cr_assert_eq(0, memcmp(idx, want_idx, k * sizeof(uint32_t)), "k = %zu: indices differ",
                     k);
        cr_assert_eq(0, memcmp(val, want_val, k * sizeof(float)), "k = %zu: values differ", k);
        printf("  topk select k = %zu of %zu: identical to the reference\n", k, n);
        free(want_idx);
        free(idx);
        free(want_val);
        free(val);
    }
    float inf = INFINITY;
    cr_assert_eq(loco_cuda_upload(f.ctx, f.dev + 5, &inf, sizeof inf, &err), LOCO_OK);
    cr_assert_eq(loco_cuda_topk_select(f.ctx, f.dev, n, 10, (uint32_t *)f.dev_payload,
                                       (float *)(f.dev_payload + 40), f.dev_payload + 80, &err),
                 LOCO_ERR_NONFINITE);
    fixture_free(&f);
}

Test(cuda_codec, dct_topk_bytes_match_cpu)
{
    SKIP_WITHOUT_GPU();
    const size_t n = 1u << 20;
    gpu_fixture f;
    fixture_init(&f, n);
    struct {
        size_t rows, cols;
        int chunk_topk;
    } cases[] = {
        {768, 768, 32},   {768, 768, 1},   {256, 4096, 4096}, {96, 1000, 100}, {96, 1000, 32},
        {7, 67, 3},       {1, 100003, 32}, {1, 4096, 32},     {1000, 1000, 7}, {64, 64, 4000},
    };
    char what[96];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_DCT_TOPK);
        p.chunk_topk = cases[c].chunk_topk;
        snprintf(what, sizeof what, "dct_topk %zu x %zu, %d per chunk", cases[c].rows,
                 cases[c].cols, cases[c].chunk_topk);
        check_same_shaped(&f, &p, cases[c].rows, cases[c].rows * cases[c].cols, what);
    }
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_DCT_TOPK);
    check_same(&f, &p, 100003, "dct_topk vector of 100003 (1 x 1 chunks)");
    check_same(&f, &p, 65536, "dct_topk vector of 65536 (1 x 64 chunks)");
    /* NaN input is refused like on the CPU */
    loco_codec *codec = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_codec_init(&codec, &p, &err), LOCO_OK);
    size_t cap = loco_codec_bound(codec, 4096), len = 0;
    uint8_t *out = malloc(cap);
    float nan = NAN;
    cr_assert_eq(loco_cuda_upload(f.ctx, f.dev + 1000, &nan, sizeof nan, &err), LOCO_OK);
    cr_assert_eq(loco_codec_encode_cuda(codec, f.ctx, f.dev, 4096, NULL, f.dev_payload, out, cap,
                                        &len, &err),
                 LOCO_ERR_NONFINITE);
    free(out);
    loco_codec_free(codec);
    fixture_free(&f);
}
