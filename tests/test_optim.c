/* tests/test_optim.c — optim/optim.h: AdamW and SGD (momentum, Nesterov) against hand-computed
 * steps (the expected values are also what torch 1.13's AdamW/SGD give for the same inputs),
 * decoupled weight decay and its tensor mask, clipping, non-finite gradients, the schedule. */
#include "optim/optim.h"

#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static const float k_grads[3][3] = {
    {0.5f, -1.0f, 0.0f}, {-0.25f, 2.0f, 1e-3f}, {0.1f, 0.1f, -3.0f}};

static void run_steps(const loco_optim_params *p, const double want[3][3], const char *what)
{
    loco_optim opt;
    loco_error err = {0};
    cr_assert_eq(loco_optim_init(&opt, p, 3, &err), LOCO_OK, "%s", err.msg);
    float params[3] = {1.0f, -2.0f, 0.5f};
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(loco_optim_step(&opt, params, k_grads[s], p->lr, NULL, NULL), LOCO_OK);
        for (int i = 0; i < 3; i++) {
            cr_assert(fabs(params[i] - want[s][i]) <= 2e-6 * (1.0 + fabs(want[s][i])),
                      "%s step %d element %d: %.9g, want %.9g", what, s + 1, i, params[i],
                      want[s][i]);
        }
    }
    cr_assert_eq(opt.step, 3);
    loco_optim_free(&opt);
}

Test(optim, adamw_matches_hand_computed_steps)
{
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.lr = 0.1f;
    p.beta1 = 0.9f;
    p.beta2 = 0.999f;
    p.eps = 1e-8f;
    p.weight_decay = 0.01f;
    /* Step 1, element 0 by hand: p = 1 (1 - 0.1 * 0.01) = 0.999; m = 0.05, v = 0.00025;
     * m / (1 - 0.9) = 0.5, sqrt(v / (1 - 0.999)) = 0.5, so p = 0.999 - 0.1 * 0.5 / 0.5 = 0.899.
     * Element 2 has g = 0: only the decay acts, 0.5 * 0.999 = 0.4995. */
    const double want[3][3] = {{0.899000049, -1.898000002, 0.499500006},
                               {0.871467352, -1.932712436, 0.424587905},
                               {0.839071512, -1.961907029, 0.488025486}};
    run_steps(&p, want, "adamw b2=0.999");
    p.lr = 0.01f;
    p.beta2 = 0.95f;
    p.eps = 1e-6f;
    p.weight_decay = 0.1f;
    const double want2[3][3] = {{0.989000022, -1.988000035, 0.499500006},
                                {0.985327363, -1.989645839, 0.491661161},
                                {0.981129169, -1.990785480, 0.497399867}};
    run_steps(&p, want2, "adamw b2=0.95");
}

Test(optim, sgd_momentum_and_nesterov_match_hand_computed_steps)
{
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.kind = LOCO_OPTIM_SGD;
    p.lr = 0.1f;
    p.weight_decay = 0.0f;
    p.momentum = 0.0f;
    const double plain[3][3] = {{0.95, -1.9, 0.5}, {0.975, -2.1, 0.4999}, {0.965, -2.11, 0.7999}};
    run_steps(&p, plain, "sgd");
    /* Momentum 0.9, element 0: buf = 0.5, p = 1 - 0.05 = 0.95; buf = 0.45 - 0.25 = 0.2,
     * p = 0.95 - 0.02 = 0.93; buf = 0.18 + 0.1 = 0.28, p = 0.93 - 0.028 = 0.902. */
    p.momentum = 0.9f;
    const double mom[3][3] = {{0.95, -1.9, 0.5}, {0.93, -2.01, 0.4999}, {0.902, -2.119, 0.79981}};
    run_steps(&p, mom, "sgd momentum");
    /* Nesterov, element 0: d = 0.5 + 0.9 * 0.5 = 0.95, p = 0.905; buf = 0.2,
     * d = -0.25 + 0.18 = -0.07, p = 0.912; buf = 0.28, d = 0.1 + 0.252 = 0.352, p = 0.8768. */
    p.nesterov = true;
    const double nest[3][3] = {
        {0.905, -1.81, 0.5}, {0.912, -2.109, 0.49981}, {0.8768, -2.2171, 1.0697291}};
    run_steps(&p, nest, "sgd nesterov");
}

Test(optim, weight_decay_is_decoupled_and_masked_by_the_table)
{
    loco_tensor_table t;
    cr_assert_eq(loco_tensor_table_init(&t, 2), LOCO_OK);
    int64_t mat[2] = {2, 2}, vec[1] = {3};
    loco_tensor_table_add(&t, "w", 0, 2, mat);
    loco_tensor_table_add(&t, "b", 0, 1, vec);
    for (int kind = 0; kind < 2; kind++) {
        loco_optim_params p;
        loco_optim_params_default(&p);
        p.kind = (loco_optim_kind)kind;
        p.lr = 0.5f;
        p.weight_decay = 0.2f;
        loco_optim opt;
        cr_assert_eq(loco_optim_init(&opt, &p, t.numel, NULL), LOCO_OK);
        float params[7] = {1, 2, 3, 4, 5, 6, 7}, zero[7] = {0};
        cr_assert_eq(loco_optim_step(&opt, params, zero, p.lr, &t, NULL), LOCO_OK);
        for (int i = 0; i < 7; i++) { /* zero gradient: only decay moves a weight, by lr * wd */
            float want = i < 4 ? (float)(i + 1) * 0.9f : (float)(i + 1);
            cr_assert(fabsf(params[i] - want) < 1e-6f, "%s element %d: %g want %g",
                      loco_optim_kind_name(p.kind), i, params[i], want);
        }
        cr_assert_eq(loco_optim_step(&opt, params, zero, p.lr, NULL, NULL), LOCO_OK);
        cr_assert(fabsf(params[6] - 7.0f * 0.9f) < 1e-6f, "no table: every element decays");
        loco_tensor_table bad = t;
        bad.numel = 3;
        cr_assert_eq(loco_optim_step(&opt, params, zero, p.lr, &bad, NULL), LOCO_ERR_INVALID_ARG);
        loco_optim_free(&opt);
    }
    loco_tensor_table_free(&t);
}

Test(optim, clipping_and_non_finite_gradients)
{
    float g[2] = {3.0f, 4.0f};
    double norm;
    cr_assert_eq(loco_grad_clip(g, 2, 10.0f, &norm, NULL), LOCO_OK);
    cr_assert(5.0 == norm && 3.0f == g[0] && 4.0f == g[1], "below the threshold: untouched");
    cr_assert_eq(loco_grad_clip(g, 2, 1.0f, &norm, NULL), LOCO_OK);
    cr_assert(fabsf(g[0] - 0.6f) < 1e-6f && fabsf(g[1] - 0.8f) < 1e-6f, "%g %g", g[0], g[1]);
    cr_assert(fabs(loco_grad_norm(g, 2) - 1.0) < 1e-6);
    float bad[3] = {1.0f, NAN, 2.0f};
    loco_error err = {0};
    cr_assert_eq(loco_grad_clip(bad, 3, 1.0f, &norm, &err), LOCO_ERR_NONFINITE);
    cr_assert(isnan(norm) && 1.0f == bad[0] && 2.0f == bad[2], "grads untouched on NaN");
    cr_assert(NULL != strstr(err.msg, "skip"), "%s", err.msg);
    float inf[2] = {INFINITY, 0.0f};
    cr_assert_eq(loco_grad_clip(inf, 2, 0.0f, &norm, NULL), LOCO_ERR_NONFINITE,
                 "non-finite is reported even with clipping off");
}

Test(optim, norm_and_update_are_thread_count_independent)
{
    size_t n = 300001;
    float *g = malloc(n * sizeof(float)), *p1 = malloc(n * sizeof(float));
    float *p2 = malloc(n * sizeof(float));
    loco_rng rng;
    loco_rng_init(&rng, 1, 2);
    for (size_t i = 0; i < n; i++) {
        g[i] = loco_rng_normal(&rng);
        p1[i] = p2[i] = loco_rng_normal(&rng);
    }
    omp_set_num_threads(1);
    double n1 = loco_grad_norm(g, n);
    omp_set_num_threads(2);
    double n2 = loco_grad_norm(g, n);
    cr_assert_eq(n1, n2, "%.17g vs %.17g", n1, n2);
    loco_optim_params p;
    loco_optim_params_default(&p);
    loco_optim a, b;
    cr_assert_eq(loco_optim_init(&a, &p, n, NULL), LOCO_OK);
    cr_assert_eq(loco_optim_init(&b, &p, n, NULL), LOCO_OK);
    for (int s = 0; s < 3; s++) {
        omp_set_num_threads(1);
        loco_optim_step(&a, p1, g, 1e-3f, NULL, NULL);
        omp_set_num_threads(2);
        loco_optim_step(&b, p2, g, 1e-3f, NULL, NULL);
    }
    cr_assert_arr_eq(p1, p2, n * sizeof(float));
    cr_assert_arr_eq(a.state, b.state, 2 * n * sizeof(float));
    loco_optim_reset(&a);
    cr_assert(0 == a.step && 0.0f == a.state[5] && 0.0f == a.state[n + 5]);
    loco_optim_free(&a);
    loco_optim_free(&b);
    free(g);
    free(p1);
    free(p2);
}

Test(optim, warmup_then_cosine_or_constant)
{
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.lr = 1.0f;
    p.min_lr = 0.1f;
    p.warmup_steps = 10;
    p.total_steps = 110;
    p.schedule = LOCO_LR_COSINE;
    cr_assert_float_eq(loco_optim_lr(&p, 0), 0.1f, 1e-7);
    cr_assert_float_eq(loco_optim_lr(&p, 4), 0.5f, 1e-7);
    cr_assert_float_eq(loco_optim_lr(&p, 9), 1.0f, 1e-7);
    cr_assert_float_eq(loco_optim_lr(&p, 10), 1.0f, 1e-7);
    cr_assert_float_eq(loco_optim_lr(&p, 60), 0.55f, 1e-6);
    cr_assert_float_eq(loco_optim_lr(&p, 110), 0.1f, 1e-7);
    cr_assert_float_eq(loco_optim_lr(&p, 5000), 0.1f, 1e-7);
    p.schedule = LOCO_LR_CONSTANT;
    cr_assert_float_eq(loco_optim_lr(&p, 60), 1.0f, 1e-7);
    p.warmup_steps = 0;
    cr_assert_float_eq(loco_optim_lr(&p, 0), 1.0f, 1e-7);
}

Test(optim, bad_params_name_the_key)
{
    loco_optim_params p;
    loco_error err = {0};
    loco_optim_params_default(&p);
    cr_assert_eq(loco_optim_params_validate(&p, NULL), LOCO_OK);
    p.beta2 = 1.0f;
    cr_assert_eq(loco_optim_params_validate(&p, &err), LOCO_ERR_CONFIG);
    cr_assert(NULL != strstr(err.msg, "optim.beta2"), "%s", err.msg);
    loco_optim_params_default(&p);
    p.lr = NAN;
    loco_error_clear(&err);
    cr_assert_eq(loco_optim_params_validate(&p, &err), LOCO_ERR_CONFIG);
    cr_assert(NULL != strstr(err.msg, "optim.lr"), "%s", err.msg);
    loco_optim_params_default(&p);
    p.kind = LOCO_OPTIM_SGD;
    p.momentum = 0.0f;
    p.nesterov = true;
    loco_error_clear(&err);
    cr_assert_eq(loco_optim_params_validate(&p, &err), LOCO_ERR_CONFIG);
    cr_assert(NULL != strstr(err.msg, "optim.nesterov"), "%s", err.msg);
    loco_optim opt;
    cr_assert_eq(loco_optim_init(&opt, &p, 10, NULL), LOCO_ERR_CONFIG);
    cr_assert_null(opt.state);
}
