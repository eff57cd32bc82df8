/* tests/test_cuda_codec.c — the quantizers encoded on the GPU (loco_codec_encode_cuda) give the
 * very bytes of the CPU encoder (loco_codec_encode) for the same input, codec and context: every
 * family (max-min at 1..8 bits, QSGD, FP4, ternary with and without clipping, sign), stochastic
 * and nearest rounding, buckets that do and do not divide the input, the entropy stage; NaN input
 * and unsupported requests fail as on the CPU. Skips without a GPU; public headers only.
 */
#include "compress/codec.h"
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
    f->payload_cap = 2 * n * sizeof(float) + 4096;
    cr_assert_eq(loco_cuda_alloc((void **)&f->dev_payload, f->payload_cap, &err), LOCO_OK);
}

static void fixture_free(gpu_fixture *f)
{
    loco_cuda_free(f->dev);
    loco_cuda_free(f->dev_payload);
    loco_cuda_ctx_free(f->ctx);
    free(f->host);
}

/* Encode on both and compare every byte; names the first difference. */
static void check_same(gpu_fixture *f, const loco_codec_params *p, size_t n, const char *what)
{
    loco_codec *codec = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_codec_init(&codec, p, &err), LOCO_OK, "%s: %s", what, err.msg);
    size_t cap = loco_codec_bound(codec, n);
    uint8_t *cpu = malloc(cap), *gpu = malloc(cap);
    loco_codec_ctx ctx = {1234567, 17, 3, 5};
    size_t cpu_len = 0, gpu_len = 0;
    cr_assert_eq(loco_codec_encode_ex(codec, NULL, f->host, n, &ctx, cpu, cap, &cpu_len, &err),
                 LOCO_OK, "%s: CPU: %s", what, err.msg);
    cr_assert_eq(loco_codec_encode_cuda(codec, f->ctx, f->dev, n, &ctx, f->dev_payload, gpu, cap,
                                        &gpu_len, &err),
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
    p = loco_codec_params_default(LOCO_CODEC_TOPK);
    cr_assert_eq(loco_codec_init(&codec, &p, &err), LOCO_OK);
    cr_assert_eq(loco_codec_encode_cuda(codec, f.ctx, f.dev, N, NULL, f.dev_payload, out, cap,
                                        &len, &err),
                 LOCO_ERR_UNSUPPORTED);
    loco_codec_free(codec);
    free(out);
    fixture_free(&f);
}
