/* bench/bench_gpucodec.c — `loco bench gpucodec`: the GPU quantizers (cuda/cuda.h, the payload of
 * loco_codec_encode_cuda) against a device-to-device copy of the same input, in the same run.
 * Both are timed per call including their synchronization (the encoder synchronizes to report
 * errors), over --reps calls after one warm-up; throughput counts input bytes (4 n) per second,
 * and the ratio is encode / copy (the goal: >= 0.8 for quantizers).
 */
#include "bench/bench.h"
#include "cuda/cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gpucodec_usage(FILE *out)
{
    fprintf(out, "usage: loco bench gpucodec [--n ELEMENTS (134217728)] [--reps N (20)] "
                 "[--device D (0)] [--json FILE]\n\n"
                 "GPU quantizer encode throughput (input GB/s) vs a device-to-device copy.\n");
}

typedef struct gpucodec_case {
    const char *name;
    loco_cuda_quant_kind kind;
    int bits;
    bool stochastic;
    float clip;
} gpucodec_case;

static const gpucodec_case k_cases[] = {
    {"maxmin-4bit-stochastic", LOCO_CUDA_QUANT_MAXMIN, 4, true, 0.0f},
    {"maxmin-8bit-stochastic", LOCO_CUDA_QUANT_MAXMIN, 8, true, 0.0f},
    {"maxmin-2bit-nearest", LOCO_CUDA_QUANT_MAXMIN, 2, false, 0.0f},
    {"qsgd-4bit-stochastic", LOCO_CUDA_QUANT_QSGD, 4, true, 0.0f},
    {"fp4-stochastic", LOCO_CUDA_QUANT_FP4, 4, true, 0.0f},
    {"ternary-stochastic-clip2.5", LOCO_CUDA_QUANT_TERNARY, 0, true, 2.5f},
    {"sign", LOCO_CUDA_QUANT_SIGN, 1, false, 0.0f},
};

int loco_bench_gpucodec(int argc, char **argv)
{
    int n_m = 134217728, reps = 20, device = 0;
    loco_bench_common common = {0};
    const loco_bench_int_flag ints[] = {{"--n", &n_m, 1024, 1 << 30},
                                        {"--reps", &reps, 1, 10000},
                                        {"--device", &device, 0, 1023}};
    int rc = loco_bench_parse_args("loco bench gpucodec", argc, argv, ints,
                                   sizeof ints / sizeof ints[0], &common, gpucodec_usage);
    if (0 != rc) {
        return rc < 0 ? 0 : rc;
    }
    size_t n = (size_t)n_m;
    loco_error err = {0};
    loco_cuda_ctx *ctx = NULL;
    float *in = NULL, *copy = NULL, *host = malloc(n * sizeof(float));
    uint8_t *payload = NULL;
    loco_status st = NULL == host ? LOCO_ERR_NOMEM : loco_cuda_ctx_init(&ctx, device, &err);
    if (LOCO_OK == st) {
        st = loco_cuda_alloc((void **)&in, n * sizeof(float), &err);
    }
    if (LOCO_OK == st) {
        st = loco_cuda_alloc((void **)&copy, n * sizeof(float), &err);
    }
    if (LOCO_OK == st) {
        st = loco_cuda_alloc((void **)&payload, 2 * n + 4096, &err);
    }
    if (LOCO_OK == st) { /* Gaussian input: every bucket has a real range */
        loco_rng rng;
        loco_rng_init(&rng, 7, 0);
        for (size_t i = 0; i < n; i++) {
            host[i] = loco_rng_normal(&rng);
        }
        st = loco_cuda_upload(ctx, in, host, n * sizeof(float), &err);
    }
    double copy_gbs = 0.0;
    if (LOCO_OK == st) {
        st = loco_cuda_copy(ctx, copy, in, n * sizeof(float), &err);
        double t0 = loco_now_s();
        for (int r = 0; LOCO_OK == st && r < reps; r++) {
            st = loco_cuda_copy(ctx, copy, in, n * sizeof(float), &err);
        }
        copy_gbs = (double)reps * 4.0 * (double)n / (loco_now_s() - t0) / 1e9;
    }
    loco_bench_records records = {0};
    if (LOCO_OK == st) {
        printf("loco bench gpucodec: %zu elements (%.2f GB), %d calls each, bucket 512, on %s\n"
               "%-30s %12s %12s %8s %10s\n",
               n, 4.0 * n / 1e9, reps, loco_cuda_ctx_device_name(ctx), "case", "encode GB/s",
               "copy GB/s", "ratio", "bytes/elem");
    }
    for (size_t c = 0; LOCO_OK == st && c < sizeof k_cases / sizeof k_cases[0]; c++) {
        loco_cuda_quant_params p = {k_cases[c].kind, k_cases[c].bits, 512, k_cases[c].stochastic,
                                    k_cases[c].clip, 1, 2};
        st = loco_cuda_quant_encode(ctx, &p, in, n, payload, &err);
        double t0 = loco_now_s();
        for (int r = 0; LOCO_OK == st && r < reps; r++) {
            st = loco_cuda_quant_encode(ctx, &p, in, n, payload, &err);
        }
        double gbs = (double)reps * 4.0 * (double)n / (loco_now_s() - t0) / 1e9;
        loco_bench_record rec;
        memset(&rec, 0, sizeof rec);
        snprintf(rec.bench, sizeof rec.bench, "gpucodec");
        snprintf(rec.case_name, sizeof rec.case_name, "%s", k_cases[c].name);
        rec.size = 4.0 * (double)n;
        rec.value = gbs;
        snprintf(rec.unit, sizeof rec.unit, "GB/s");
        snprintf(rec.baseline, sizeof rec.baseline, "d2d copy");
        rec.baseline_value = copy_gbs;
        rec.ratio = gbs / copy_gbs;
        if (LOCO_OK == st) {
            st = loco_bench_records_add(&records, &rec);
            printf("%-30s %12.1f %12.1f %8.3f %10.3f\n", rec.case_name, gbs, copy_gbs, rec.ratio,
                   (double)loco_cuda_quant_payload_bytes(&p, n) / (double)n);
        }
    }
    if (LOCO_OK == st && NULL != common.json) {
        st = loco_bench_records_write(&records, common.json, &err);
    }
    loco_bench_records_free(&records);
    loco_cuda_free(in);
    loco_cuda_free(copy);
    loco_cuda_free(payload);
    loco_cuda_ctx_free(ctx);
    free(host);
    if (LOCO_OK != st) {
        fprintf(stderr, "loco bench gpucodec: %s\n", loco_error_msg(&err, st));
        return 1;
    }
    return 0;
}
