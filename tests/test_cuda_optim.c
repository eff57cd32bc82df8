/* tests/test_cuda_optim.c — optimizers on device buffers (optim.h's _cuda functions,
 * cuda/optim.cu) against the CPU optimizers: AdamW and SGD (momentum, Nesterov) with a tensor
 * table's weight-decay mask, the bf16 copy written in the same pass, gradient norm and clipping,
 * and DiLoCo's outer Nesterov step against its formula. Skips without a GPU; public headers only.
 */
#include "cuda/cuda.h"
#include "tests/cuda_skip.h"
#include "optim/optim.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { NP = 100000 };

static void fill(float *x, size_t n, float scale, uint64_t seed)
{
    loco_rng rng;
    loco_rng_init(&rng, seed, 3);
    for (size_t i = 0; i < n; i++) {
        x[i] = scale * (loco_rng_uniform(&rng) - 0.5f);
    }
}

/* A table with matrices and vectors interleaved: decay applies to the 2-D ones only. */
static void make_table(loco_tensor_table *t)
{
    cr_assert_eq(loco_tensor_table_init(t, 8), LOCO_OK);
    int64_t m1[2] = {200, 100}, v1[1] = {1000}, m2[2] = {300, 100}, v2[1] = {39000},
            m3[2] = {10, 1000};
    loco_tensor_table_add(t, "a.weight", 0, 2, m1);
    loco_tensor_table_add(t, "a.bias", 0, 1, v1);
    loco_tensor_table_add(t, "b.weight", 0, 2, m2);
    loco_tensor_table_add(t, "c.weight", 0, 2, m3);
    loco_tensor_table_add(t, "c.bias", 0, 1, v2);
    cr_assert_eq(t->numel, (size_t)NP);
}

static void check_optimizer(const loco_optim_params *p, const char *what)
{
    loco_cuda_ctx *ctx = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_cuda_ctx_init(&ctx, 0, &err), LOCO_OK, "%s", err.msg);
    loco_tensor_table table;
    make_table(&table);
    float *params = malloc(NP * sizeof(float)), *grads = malloc(NP * sizeof(float));
    float *got = malloc(NP * sizeof(float));
    uint16_t *got16 = malloc(NP * sizeof(uint16_t));
    fill(params, NP, 2.0f, 1);
    float *d_params, *d_grads;
    uint16_t *d_params16;
    cr_assert_eq(loco_cuda_alloc((void **)&d_params, NP * sizeof(float), &err), LOCO_OK);
    cr_assert_eq(loco_cuda_alloc((void **)&d_grads, NP * sizeof(float), &err), LOCO_OK);
    cr_assert_eq(loco_cuda_alloc((void **)&d_params16, NP * sizeof(uint16_t), &err), LOCO_OK);
    cr_assert_eq(loco_cuda_upload(ctx, d_params, params, NP * sizeof(float), &err), LOCO_OK);
    loco_optim host, dev;
    cr_assert_eq(loco_optim_init(&host, p, NP, &err), LOCO_OK);
    cr_assert_eq(loco_optim_init_cuda(&dev, p, NP, ctx, &table, &err), LOCO_OK, "%s", err.msg);
    for (int s = 0; s < 4; s++) {
        fill(grads, NP, 1.0f, 10 + s);
        cr_assert_eq(loco_cuda_upload(ctx, d_grads, grads, NP * sizeof(float), &err), LOCO_OK);
        cr_assert_eq(loco_optim_step(&host, params, grads, p->lr, &table, &err), LOCO_OK);
        cr_assert_eq(loco_optim_step_cuda(&dev, d_params, d_params16, d_grads, p->lr, &err),
                     LOCO_OK, "%s", err.msg);
    }
    cr_assert_eq(dev.step, 4);
    cr_assert_eq(loco_cuda_download(ctx, got, d_params, NP * sizeof(float), &err), LOCO_OK);
    cr_assert_eq(loco_cuda_download(ctx, got16, d_params16, NP * sizeof(uint16_t), &err), LOCO_OK);
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < NP; i++) {
        double e = fabs((double)got[i] - params[i]) / (1e-3 + fabs(params[i]));
        if (e > worst || isnan(e)) {
            worst = isnan(e) ? INFINITY : e;
            at = i;
        }
        cr_assert_eq(got16[i], loco_f32_to_bf16(got[i]), "%s: bf16 copy wrong at %zu", what, i);
    }
    printf("%s: 4 steps, max rel diff to the CPU %.2e\n", what, worst);
    cr_assert(worst <= 1e-5, "%s: parameter %zu is %.9g on the GPU, %.9g on the CPU", what, at,
              (double)got[at], (double)params[at]);
    loco_optim_free(&host);
    loco_optim_free(&dev);
    loco_cuda_free(d_params);
    loco_cuda_free(d_grads);
    loco_cuda_free(d_params16);
    loco_tensor_table_free(&table);
    loco_cuda_ctx_free(ctx);
    free(params);
    free(grads);
    free(got);
    free(got16);
}

Test(cuda_optim, adamw_matches_cpu_with_decay_mask)
{
    SKIP_WITHOUT_GPU();
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.lr = 1e-2f;
    p.weight_decay = 0.1f;
    check_optimizer(&p, "adamw");
}

Test(cuda_optim, sgd_momentum_and_nesterov_match_cpu)
{
    SKIP_WITHOUT_GPU();
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.kind = LOCO_OPTIM_SGD;
    p.lr = 0.05f;
    p.momentum = 0.9f;
    p.weight_decay = 0.01f;
    check_optimizer(&p, "sgd momentum");
    p.nesterov = true;
    check_optimizer(&p, "sgd nesterov");
    p.momentum = 0.0f;
    p.nesterov = false;
    check_optimizer(&p, "sgd plain");
}

Test(cuda_optim, grad_norm_and_clip_match_cpu)
{
    SKIP_WITHOUT_GPU();
    loco_cuda_ctx *ctx = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_cuda_ctx_init(&ctx, 0, &err), LOCO_OK, "%s", err.msg);
    size_t n = 1234567;
    float *g = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    fill(g, n, 4.0f, 5);
    float *d;
    cr_assert_eq(loco_cuda_alloc((void **)&d, n * sizeof(float), &err), LOCO_OK);
    cr_assert_eq(loco_cuda_upload(ctx, d, g, n * sizeof(float), &err), LOCO_OK);
    double ng = 0, nc = 0;
    cr_assert_eq(loco_grad_clip_cuda(ctx, d, n, 1.0f, &ng, &err), LOCO_OK, "%s", err.msg);
    cr_assert_eq(loco_grad_clip(g, n, 1.0f, &nc, &err), LOCO_OK);
    cr_assert(fabs(ng - nc) <= 1e-12 * nc, "norm %.17g on the GPU, %.17g on the CPU", ng, nc);
    cr_assert_eq(loco_cuda_download(ctx, got, d, n * sizeof(float), &err), LOCO_OK);
    for (size_t i = 0; i < n; i++) {
        cr_assert(fabsf(got[i] - g[i]) <= 1e-6f * fabsf(g[i]), "clipped %zu: %g vs %g", i,
                  (double)got[i], (double)g[i]);
    }
    /* a NaN gradient: the norm says so and nothing is scaled */
    float nan = NAN;
    cr_assert_eq(loco_cuda_upload(ctx, d + 7, &nan, sizeof nan, &err), LOCO_OK);
    cr_assert_eq(loco_grad_clip_cuda(ctx, d, n, 1.0f, &ng, &err), LOCO_ERR_NONFINITE);
    loco_cuda_free(d);
    loco_cuda_ctx_free(ctx);
    free(g);
    free(got);
}

Test(cuda_optim, outer_nesterov_matches_its_formula)
{
    SKIP_WITHOUT_GPU();
    loco_cuda_ctx *ctx = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_cuda_ctx_init(&ctx, 0, &err), LOCO_OK, "%s", err.msg);
    size_t n = 50000;
    float lr = 0.7f, mu = 0.9f;
    float *outer = malloc(n * 4), *delta = malloc(n * 4), *mom = calloc(n, 4);
    float *got = malloc(n * 4), *got_local = malloc(n * 4);
    fill(outer, n, 2.0f, 1);
    float *d_outer, *d_local, *d_delta, *d_mom;
    cr_assert_eq(loco_cuda_alloc((void **)&d_outer, n * 4, &err), LOCO_OK);
    cr_assert_eq(loco_cuda_alloc((void **)&d_local, n * 4, &err), LOCO_OK);
    cr_assert_eq(loco_cuda_alloc((void **)&d_delta, n * 4, &err), LOCO_OK);
    cr_assert_eq(loco_cuda_alloc((void **)&d_mom, n * 4, &err), LOCO_OK);
    cr_assert_eq(loco_cuda_upload(ctx, d_outer, outer, n * 4, &err), LOCO_OK);
    for (int r = 0; r < 3; r++) {
        fill(delta, n, 0.1f, 20 + r);
        cr_assert_eq(loco_cuda_upload(ctx, d_delta, delta, n * 4, &err), LOCO_OK);
        cr_assert_eq(loco_cuda_outer_nesterov(ctx, d_outer, d_local, NULL, d_delta, d_mom, lr, mu,
                                              n, &err),
                     LOCO_OK, "%s", err.msg);
        for (size_t i = 0; i < n; i++) { /* torch.optim.SGD(nesterov=True) on the outer copy */
            mom[i] = mu * mom[i] + delta[i];
            outer[i] -= lr * (delta[i] + mu * mom[i]);
        }
    }
    cr_assert_eq(loco_cuda_download(ctx, got, d_outer, n * 4, &err), LOCO_OK);
    cr_assert_eq(loco_cuda_download(ctx, got_local, d_local, n * 4, &err), LOCO_OK);
    for (size_t i = 0; i < n; i++) {
        cr_assert(fabsf(got[i] - outer[i]) <= 1e-6f * (1.0f + fabsf(outer[i])),
                  "outer %zu: %g vs %g", i, (double)got[i], (double)outer[i]);
        cr_assert(got_local[i] == got[i], "local %zu does not restart from outer", i);
    }
    loco_cuda_free(d_outer);
    loco_cuda_free(d_local);
    loco_cuda_free(d_delta);
    loco_cuda_free(d_mom);
    loco_cuda_ctx_free(ctx);
    free(outer);
    free(delta);
    free(mom);
    free(got);
    free(got_local);
}

Test(cuda_optim, cpu_only_builds_say_so)
{
    if (loco_cuda_built()) {
        cr_skip_test("skipped: this build has CUDA");
    }
    loco_cuda_ctx *ctx = NULL;
    loco_error err = {0};
    cr_assert_eq(loco_cuda_ctx_init(&ctx, 0, &err), LOCO_ERR_UNSUPPORTED);
    cr_assert(NULL != strstr(err.msg, "without CUDA"), "%s", err.msg);
    cr_assert_eq(loco_cuda_device_count(), 0);
}
