/* tests/cuda_testutil.h — helpers for the GPU tests: skipping without a device, device buffers
 * from host arrays (fp32 or bf16), bf16 rounding for CPU references, and comparisons that report
 * the worst element. Include only inside `#if LOCO_HAVE_CUDA`. */
#ifndef LOCO_TESTS_CUDA_TESTUTIL_H
#define LOCO_TESTS_CUDA_TESTUTIL_H

#include "base/base.h"
#include "cuda/cuda.h"
#include "cuda/layers_cuda.h"
#include "tests/cuda_skip.h"
#include "tests/model_testutil.h"

#include <criterion/criterion.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CUDA_OK(call) cr_assert_eq((call), cudaSuccess, "%s failed", #call)
#define LOCO_OK_(call) cr_assert_eq((call), LOCO_OK, "%s failed", #call)

static inline void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    CUDA_OK(cudaMalloc(&p, bytes > 0 ? bytes : 1));
    CUDA_OK(cudaMemset(p, 0, bytes));
    return p;
}

static inline float *dev_f32(const float *host, size_t n)
{
    float *d = (float *)dev_alloc(n * sizeof(float));
    CUDA_OK(cudaMemcpy(d, host, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

static inline loco_bf16 *dev_bf16(const float *host, size_t n)
{
    uint16_t *tmp = (uint16_t *)malloc(n * sizeof(uint16_t) + 1);
    cr_assert_not_null(tmp);
    for (size_t i = 0; i < n; i++) {
        tmp[i] = loco_f32_to_bf16(host[i]);
    }
    loco_bf16 *d = (loco_bf16 *)dev_alloc(n * sizeof(uint16_t));
    CUDA_OK(cudaMemcpy(d, tmp, n * sizeof(uint16_t), cudaMemcpyHostToDevice));
    free(tmp);
    return d;
}

static inline void get_f32(float *host, const float *dev, size_t n)
{
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost));
}

static inline void get_bf16(float *host, const loco_bf16 *dev, size_t n)
{
    uint16_t *tmp = (uint16_t *)malloc(n * sizeof(uint16_t) + 1);
    cr_assert_not_null(tmp);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(tmp, dev, n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) {
        host[i] = loco_bf16_to_f32(tmp[i]);
    }
    free(tmp);
}

/* Uniform in [lo, hi), rounded to bf16 so the CPU reference sees exactly the GPU's inputs. */
static inline float *rand_bf16_values(size_t n, float lo, float hi, uint64_t seed)
{
    float *x = (float *)malloc(n * sizeof(float) + 4);
    cr_assert_not_null(x);
    loco_rng rng;
    loco_rng_init(&rng, seed, 11);
    for (size_t i = 0; i < n; i++) {
        x[i] = loco_bf16_to_f32(loco_f32_to_bf16(lo + (hi - lo) * loco_rng_uniform(&rng)));
    }
    return x;
}

static inline float *host_zeros(size_t n)
{
    float *x = (float *)calloc(n + 1, sizeof(float));
    cr_assert_not_null(x);
    return x;
}

/* Assert a close to ref within tol (normalized max error); prints the error either way, so the
 * device log shows how close each kernel is. */
static inline void expect_close(const char *what, const float *a, const float *ref, size_t n,
                                double tol)
{
    size_t worst = 0;
    double e = norm_err_ff(a, ref, n, 1e-20, &worst);
    printf("  %-44s max rel err %.3e (tol %.1e)\n", what, e, tol);
    fflush(stdout);
    cr_assert(e <= tol, "%s: max rel err %.3e > %.1e; worst [%zu]: got %.6g, want %.6g", what, e,
              tol, worst, (double)a[worst], (double)ref[worst]);
}

#endif /* LOCO_TESTS_CUDA_TESTUTIL_H */
