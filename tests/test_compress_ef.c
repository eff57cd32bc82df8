/* tests/test_compress_ef.c — compress/: error feedback (exact mass conservation; EControl's and
 * EF21's update rules step by step; an 8-worker heterogeneous quadratic where top-k 1% converges
 * with EF/EF21/EControl and stalls without, and EF-sign converges where sign stalls), DeMo's DCT
 * (orthonormal, matches the naive DCT-II, chunk sizes), PowerSGD (full rank reconstructs, warm
 * start), L-GreCo (DP == brute force). */
#include "test_compress_util.h"
#include "compress/dct.h"
#include "compress/ef.h"
#include "compress/lgreco.h"
#include "compress/powersgd.h"

#include <omp.h>

/* ---- error feedback: conservation ------------------------------------------------------------- */

Test(ef, mass_is_conserved_exactly_for_sparsifiers_and_to_a_rounding_for_dense)
{
    const size_t n = 5003;
    const loco_codec_id ids[] = {LOCO_CODEC_TOPK, LOCO_CODEC_RANDK, LOCO_CODEC_MAXMIN,
                                 LOCO_CODEC_SIGN, LOCO_CODEC_TERNARY};
    float *g = test_floats(n), *before = test_floats(n), *dec = test_floats(n);
    double *total_g = calloc(n, sizeof(double)), *total_sent = calloc(n, sizeof(double));
    for (int c = 0; c < 5; c++) {
        loco_codec *codec = test_codec(loco_codec_params_default(ids[c]));
        loco_ef_params ep = loco_ef_params_default();
        loco_ef *ef = NULL;
        cr_assert_eq(LOCO_OK, loco_ef_init(&ef, &ep, n, NULL));
        float *e, *h;
        loco_ef_buffers(ef, &e, &h);
        cr_assert_null(h);
        memset(total_g, 0, n * sizeof(double));
        memset(total_sent, 0, n * sizeof(double));
        bool sparse = LOCO_CODEC_TOPK == ids[c] || LOCO_CODEC_RANDK == ids[c];
        size_t cap = loco_codec_bound(codec, n);
        uint8_t *msg = malloc(cap);
        for (int step = 0; step < 20; step++) {
            fill_normal(g, n, 900 + step);
            memcpy(before, e, n * sizeof(float));
            loco_codec_ctx ctx = {1, (uint64_t)step, 0, 0};
            size_t len;
            cr_assert_eq(LOCO_OK, loco_ef_encode(ef, codec, NULL, g, n, &ctx, msg, cap, &len, NULL));
            memset(dec, 0, n * sizeof(float));
            cr_assert_eq(LOCO_OK, loco_codec_decode_add(codec, msg, len, dec, n, 1.0f, &ctx));
            for (size_t i = 0; i < n; i++) {
                float p = before[i] + g[i]; /* what was compressed */
                if (sparse) {
                    /* kept entries leave 0 behind, dropped ones stay whole: bit-exact */
                    cr_assert(loco_f32_bits(dec[i] + e[i]) == loco_f32_bits(p) &&
                                  (0.0f == dec[i] || 0.0f == e[i]),
                              "%s step %d i %zu: sent %g + residual %g != %g",
                              loco_codec_name(ids[c]), step, i, dec[i], e[i], p);
                } else {
                    /* e = fl(p - sent): one rounding, at most half an ulp of e */
                    double half_ulp = 0.5 * (nextafterf(fabsf(e[i]), INFINITY) - fabsf(e[i]));
                    cr_assert(fabs((double)dec[i] + e[i] - p) <= half_ulp, "%s: %g + %g vs %g",
                              loco_codec_name(ids[c]), dec[i], e[i], p);
                }
                total_g[i] += g[i];
                total_sent[i] += dec[i];
            }
        }
        for (size_t i = 0; i < n; i++) { /* over T steps: sum(sent) + e_T == sum(g) */
            cr_assert(fabs(total_sent[i] + e[i] - total_g[i]) <= 1e-4 * (1 + fabs(total_g[i])),
                      "%s: drift at %zu", loco_codec_name(ids[c]), i);
        }
        free(msg);
        loco_ef_free(ef);
        loco_codec_free(codec);
    }
    free(g);
    free(before);
    free(dec);
    free(total_g);
    free(total_sent);
}

Test(ef, decay_scales_the_residual_like_demo_momentum)
{
    /* identity-like codec on one element that top-k drops: e_t = decay * e_{t-1} + g */
    const size_t n = 200;
    float g[200];
    for (size_t i = 0; i < n; i++) {
        g[i] = i == 0 ? 10.0f : 1.0f; /* element 0 is always the one sent */
    }
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TOPK);
    p.density = 0.005f; /* k = 1 */
    loco_codec *c = test_codec(p);
    loco_ef_params ep = {LOCO_EF_EF, 0.01f, 0.5f};
    loco_ef *ef = NULL;
    cr_assert_eq(LOCO_OK, loco_ef_init(&ef, &ep, n, NULL));
    float *e, *h;
    loco_ef_buffers(ef, &e, &h);
    uint8_t msg[4096];
    size_t len;
    for (int step = 0; step < 3; step++) {
        cr_assert_eq(LOCO_OK, loco_ef_encode(ef, c, NULL, g, n, NULL, msg, sizeof msg, &len, NULL));
    }
    cr_expect_float_eq(e[5], 1.0f + 0.5f * (1.0f + 0.5f * 1.0f), 1e-6, "decayed residual");
    cr_expect_eq(e[0], 0.0f, "the sent element leaves nothing behind");
    loco_ef_reset(ef);
    cr_expect_eq(e[5], 0.0f);
    loco_ef_free(ef);
    loco_codec_free(c);
}

/* EControl's and EF21's state, step by step, against the rule written out here with the same
 * codec (ef.h; Gao, Islamov, Stich, arXiv 2311.05645): Delta = C(eta e + g - h), e += g - h -
 * Delta (h before the step), h += Delta; EF21 is eta = 0 without e. The messages must be the
 * codec's own bytes for that input and e, h must match bit for bit. */
Test(ef, econtrol_and_ef21_follow_their_update_rules_step_by_step)
{
    const size_t n = 3001;
    const float eta = 0.25f;
    loco_codec_params cp = loco_codec_params_default(LOCO_CODEC_TOPK);
    cp.density = 0.05f;
    loco_codec *c = test_codec(cp);
    size_t cap = loco_codec_bound(c, n);
    uint8_t *msg = malloc(cap), *want_msg = malloc(cap);
    float *g = test_floats(n), *p = test_floats(n), *delta = test_floats(n);
    float *e_ref = test_floats(n), *h_ref = test_floats(n);
    cr_assert(NULL != msg && NULL != want_msg);
    for (int econtrol = 0; econtrol < 2; econtrol++) {
        loco_ef_params ep = loco_ef_params_default();
        ep.mode = econtrol ? LOCO_EF_ECONTROL : LOCO_EF_EF21;
        ep.eta = eta;
        loco_ef *ef = NULL;
        cr_assert_eq(LOCO_OK, loco_ef_init(&ef, &ep, n, NULL));
        float *e, *h;
        loco_ef_buffers(ef, &e, &h);
        memset(e_ref, 0, n * sizeof(float));
        memset(h_ref, 0, n * sizeof(float));
        loco_rng r;
        loco_rng_init(&r, 12, (uint64_t)econtrol);
        size_t moved = 0;
        for (int step = 0; step < 6; step++) {
            for (size_t i = 0; i < n; i++) { /* a drifting gradient, so h lags and e grows */
                g[i] = sinf(0.01f * (float)i + 0.3f * (float)step) + 0.1f * loco_rng_normal(&r);
            }
            size_t len = 0, want_len = 0;
            cr_assert_eq(LOCO_OK, loco_ef_encode(ef, c, NULL, g, n, NULL, msg, cap, &len, NULL));
            for (size_t i = 0; i < n; i++) {
                volatile float scaled = eta * e_ref[i]; /* rounded apart, as compress/ does */
                p[i] = econtrol ? scaled + g[i] - h_ref[i] : g[i] - h_ref[i];
            }
            cr_assert_eq(LOCO_OK,
                         loco_codec_encode_ex(c, NULL, p, n, NULL, want_msg, cap, &want_len, NULL));
            cr_assert(len == want_len && 0 == memcmp(msg, want_msg, len),
                      "%s step %d: the message is not C(the rule's input)",
                      econtrol ? "econtrol" : "ef21", step);
            memset(delta, 0, n * sizeof(float));
            loco_status st = loco_codec_decode_add_ex(c, want_msg, want_len, delta, n, 1.0f, NULL,
                                                      NULL);
            cr_assert_eq(LOCO_OK, st);
            for (size_t i = 0; i < n; i++) {
                if (econtrol) {
                    e_ref[i] += g[i] - h_ref[i] - delta[i];
                }
                h_ref[i] += delta[i];
            }
            for (size_t i = 0; i < n; i++) {
                cr_assert_eq(h[i], h_ref[i], "step %d: h[%zu] %g, the rule gives %g", step, i,
                             (double)h[i], (double)h_ref[i]);
                if (econtrol) {
                    cr_assert_eq(e[i], e_ref[i], "step %d: e[%zu] %g, the rule gives %g", step, i,
                                 (double)e[i], (double)e_ref[i]);
                    moved += 0.0f != e[i];
                }
            }
        }
        cr_expect(!econtrol || moved > 0, "the error state never moved: the test cannot fail");
        loco_ef_free(ef);
    }
    free(msg);
    free(want_msg);
    free(g);
    free(p);
    free(delta);
    free(e_ref);
    free(h_ref);
    loco_codec_free(c);
}

Test(ef, bad_params_and_mode_names)
{
    loco_ef *ef = NULL;
    loco_ef_params p = loco_ef_params_default();
    p.mode = LOCO_EF_ECONTROL;
    p.eta = 0.0f;
    loco_error err = {0};
    cr_expect_eq(LOCO_ERR_CONFIG, loco_ef_init(&ef, &p, 10, &err));
    cr_expect(NULL != strstr(err.msg, "eta"));
    loco_ef_mode m;
    cr_expect_eq(LOCO_OK, loco_ef_mode_parse("econtrol", &m, NULL));
    cr_expect_eq(m, LOCO_EF_ECONTROL);
    cr_expect_eq(LOCO_ERR_CONFIG, loco_ef_mode_parse("ef14", &m, NULL));
}

/* ---- 8 workers on a heterogeneous quadratic ------------------------------------------------------
 * f(x) = 1/N sum_i 1/2 (x - x*_i)^T A (x - x*_i), A = diag(a_j), a_j from 1 to 100 (condition 100),
 * x*_i ~ N(0, I) per worker, optimum x* = mean x*_i, full gradients g_i = A (x - x*_i). Each
 * worker sends loco_ef_encode(lr_t g_i); the server averages the decoded messages: EF/none step
 * with the average, EF21/EControl add it to the global estimate H and step with H. */

#define QW 8
#define QD 1000

typedef struct quad_run {
    double rel_mid, rel_end; /* ||x - x*|| / ||x0 - x*|| at T/2 and T */
} quad_run;

static quad_run run_quadratic(loco_codec_id id, float density, loco_ef_mode mode, float eta,
                              float lr0, float tau, int T)
{
    static float a[QD], xs[QW][QD], xstar[QD];
    loco_rng r;
    loco_rng_init(&r, 1, 1);
    for (int j = 0; j < QD; j++) {
        a[j] = powf(100.0f, (float)j / (QD - 1));
    }
    for (int i = 0; i < QW; i++) {
        for (int j = 0; j < QD; j++) {
            xs[i][j] = loco_rng_normal(&r);
        }
    }
    for (int j = 0; j < QD; j++) {
        double s = 0;
        for (int i = 0; i < QW; i++) {
            s += xs[i][j];
        }
        xstar[j] = (float)(s / QW);
    }
    loco_codec_params p = loco_codec_params_default(id);
    p.density = density;
    loco_codec *c = test_codec(p);
    loco_ef_params ep = {mode, eta, 1.0f};
    loco_ef *ef[QW];
    loco_codec_state *cs[QW];
    for (int i = 0; i < QW; i++) {
        cr_assert_eq(LOCO_OK, loco_ef_init(&ef[i], &ep, QD, NULL));
        cr_assert_eq(LOCO_OK, loco_codec_state_init(&cs[i], c, 1, QD, NULL));
    }
    float x[QD] = {0}, g[QD], upd[QD], H[QD] = {0};
    size_t cap = loco_codec_bound(c, QD);
    uint8_t *msg = malloc(cap);
    double d0 = 0;
    for (int j = 0; j < QD; j++) {
        d0 += (double)xstar[j] * xstar[j];
    }
    quad_run out = {0, 0};
    for (int t = 0; t < T; t++) {
        float lr = tau > 0 ? lr0 / (1.0f + (float)t / tau) : lr0;
        memset(upd, 0, sizeof upd);
        for (int i = 0; i < QW; i++) {
            for (int j = 0; j < QD; j++) {
                g[j] = lr * a[j] * (x[j] - xs[i][j]);
            }
            loco_codec_ctx ctx = {1, (uint64_t)t, (uint32_t)i, 0};
            size_t len;
            loco_error err = {0};
            cr_assert_eq(LOCO_OK, loco_ef_encode(ef[i], c, cs[i], g, QD, &ctx, msg, cap, &len, &err),
                         "%s", err.msg);
            cr_assert_eq(LOCO_OK, loco_codec_decode_add(c, msg, len, upd, QD, 1.0f / QW, &ctx));
        }
        bool estimator = LOCO_EF_EF21 == mode || LOCO_EF_ECONTROL == mode;
        for (int j = 0; j < QD; j++) {
            if (estimator) {
                H[j] += upd[j];
                x[j] -= H[j];
            } else {
                x[j] -= upd[j];
            }
        }
        if (t == T / 2 - 1 || t == T - 1) {
            double d = 0;
            for (int j = 0; j < QD; j++) {
                d += (double)(x[j] - xstar[j]) * (x[j] - xstar[j]);
            }
            *(t == T - 1 ? &out.rel_end : &out.rel_mid) = sqrt(d / d0);
        }
    }
    for (int i = 0; i < QW; i++) {
        loco_ef_free(ef[i]);
        loco_codec_state_free(cs[i]);
    }
    free(msg);
    loco_codec_free(c);
    return out;
}

Test(convergence, topk_1pct_converges_with_ef_and_stalls_without, .timeout = 600)
{
    /* Without EF each worker keeps sending its own largest coordinates: x stalls far away. */
    quad_run none = run_quadratic(LOCO_CODEC_TOPK, 0.01f, LOCO_EF_NONE, 0, 0.01f, 30.0f, 4000);
    cr_expect_gt(none.rel_end, 0.9, "top-k without EF: %g", none.rel_end);
    cr_expect_gt(none.rel_end, 0.99 * none.rel_mid, "top-k without EF made progress");
    /* Classic EF: the virtual iterate follows exact GD; heterogeneity needs a decaying step. */
    quad_run ef = run_quadratic(LOCO_CODEC_TOPK, 0.01f, LOCO_EF_EF, 0, 0.01f, 30.0f, 20000);
    cr_expect_lt(ef.rel_end, 0.05, "top-k + EF: %g", ef.rel_end);
    cr_expect_lt(ef.rel_end, 0.8 * ef.rel_mid, "top-k + EF still converging: %g -> %g",
                 ef.rel_mid, ef.rel_end);
    /* EF21 and EControl converge linearly at a constant step, down to fp32's floor. */
    quad_run ef21 = run_quadratic(LOCO_CODEC_TOPK, 0.01f, LOCO_EF_EF21, 0, 0.002f, 0, 10000);
    cr_expect_lt(ef21.rel_end, 1e-4, "top-k + EF21: %g", ef21.rel_end);
    quad_run ec = run_quadratic(LOCO_CODEC_TOPK, 0.01f, LOCO_EF_ECONTROL, 0.01f, 0.002f, 0, 10000);
    cr_expect_lt(ec.rel_end, 1e-4, "top-k + EControl: %g", ec.rel_end);
}

Test(convergence, ef_sign_converges_where_sign_stalls, .timeout = 600)
{
    quad_run sign = run_quadratic(LOCO_CODEC_SIGN, 0, LOCO_EF_NONE, 0, 0.01f, 30.0f, 4000);
    cr_expect_gt(sign.rel_end, 0.5, "scaled sign without EF: %g", sign.rel_end);
    cr_expect_gt(sign.rel_end, 0.99 * sign.rel_mid, "sign without EF made progress");
    quad_run efs = run_quadratic(LOCO_CODEC_SIGN, 0, LOCO_EF_EF, 0, 0.01f, 30.0f, 10000);
    cr_expect_lt(efs.rel_end, 0.05, "EF-sign: %g", efs.rel_end);
    cr_expect_lt(efs.rel_end, 0.9 * efs.rel_mid, "EF-sign still converging: %g -> %g",
                 efs.rel_mid, efs.rel_end);
}

/* ---- DCT ----------------------------------------------------------------------------------------- */

Test(dct, chunk_sizes_match_demo)
{
    const size_t dims[] = {2048, 50304, 50257, 1000, 96, 7, 67, 64, 1, 768};
    const size_t want[] = {64, 64, 29, 50, 48, 7, 1, 64, 1, 64};
    for (int i = 0; i < 10; i++) {
        cr_expect_eq(loco_dct_chunk(dims[i]), want[i], "dim %zu", dims[i]);
    }
}

Test(dct, basis_is_orthonormal_and_matches_the_naive_dct2)
{
    const size_t sizes[] = {1, 2, 7, 29, 48, 64};
    for (int s = 0; s < 6; s++) {
        size_t m = sizes[s];
        float B[64 * 64];
        loco_dct_basis(m, B);
        for (size_t u = 0; u < m; u++) {
            for (size_t v = 0; v < m; v++) {
                double dot = 0;
                for (size_t i = 0; i < m; i++) {
                    dot += (double)B[u * m + i] * B[v * m + i];
                }
                cr_assert(fabs(dot - (u == v)) < 1e-6, "m %zu: <b%zu, b%zu> = %g", m, u, v, dot);
            }
        }
        float x[64];
        fill_normal(x, m, m);
        double X[64];
        loco_dct_naive(x, m, X);
        /* a 1 x m tensor is one chunk of the 1-D transform */
        float Y[64];
        loco_dct_forward(x, 1, m, Y);
        for (size_t u = 0; u < m; u++) {
            cr_assert(fabs(Y[u] - X[u]) < 1e-5 * (1 + fabs(X[u])), "m %zu coefficient %zu", m, u);
        }
    }
}

Test(dct, two_d_forward_inverse_round_trip_and_energy)
{
    const size_t rows = 96, cols = 1000; /* chunks 48 x 50 */
    float *x = test_floats(rows * cols), *X = test_floats(rows * cols), *y = test_floats(rows * cols);
    fill_normal(x, rows * cols, 5);
    loco_dct_forward(x, rows, cols, X);
    loco_dct_inverse(X, rows, cols, y);
    double ex = 0, eX = 0;
    for (size_t i = 0; i < rows * cols; i++) {
        cr_assert(fabsf(y[i] - x[i]) < 1e-4f, "round trip at %zu", i);
        ex += (double)x[i] * x[i];
        eX += (double)X[i] * X[i];
    }
    cr_expect(fabs(ex - eX) < 1e-4 * ex, "orthonormal: energy %g vs %g", ex, eX);
    /* the 2-D chunk transform is the separable product of 1-D transforms: check one entry */
    float B48[48 * 48], B50[50 * 50];
    loco_dct_basis(48, B48);
    loco_dct_basis(50, B50);
    size_t u = 3, v = 7, a = 1, b = 5; /* chunk (1, 5), coefficient (3, 7) */
    double want = 0;
    for (size_t i = 0; i < 48; i++) {
        for (size_t j = 0; j < 50; j++) {
            want += (double)B48[u * 48 + i] * B50[v * 50 + j] * x[(a * 48 + i) * cols + b * 50 + j];
        }
    }
    cr_expect(fabs(X[(a * 48 + u) * cols + b * 50 + v] - want) < 1e-4, "2-D coefficient");
    free(x);
    free(X);
    free(y);
}

Test(dct, codec_keeps_the_top_coefficients_per_chunk)
{
    const size_t rows = 128, cols = 192; /* chunks 64 x 64 */
    const size_t n = rows * cols;
    float *x = test_floats(n), *X = test_floats(n);
    fill_normal(x, n, 8);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_DCT_TOPK);
    loco_codec *c = test_codec(p);
    loco_codec_state *s = NULL;
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&s, c, rows, cols, NULL));
    size_t len;
    uint8_t *msg = test_encode(c, s, x, n, NULL, &len);
    cr_expect_eq(len, loco_codec_bound_shape(c, rows, cols));
    cr_expect_eq(len, 72 + 6 * (32 * 4 + 32 * 12 / 8), "values + 12-bit indices per chunk");
    /* decoded == IDCT(kept coefficients); kept == the 32 largest |X| of each chunk */
    float *coef = test_floats(n), *count = test_floats(n), *dec = test_floats(n),
          *want = test_floats(n);
    cr_assert_eq(LOCO_OK, loco_dct_add_coefficients(msg, len, rows, cols, 1.0f, coef, count, NULL));
    loco_dct_forward(x, rows, cols, X);
    for (size_t ca = 0; ca < 2; ca++) {
        for (size_t cb = 0; cb < 3; cb++) {
            float min_kept = INFINITY, max_dropped = 0;
            int kept = 0;
            for (size_t u = 0; u < 64; u++) {
                for (size_t v = 0; v < 64; v++) {
                    size_t at = (ca * 64 + u) * cols + cb * 64 + v;
                    if (count[at] > 0) {
                        kept++;
                        cr_assert(fabsf(coef[at] - X[at]) < 1e-5f, "kept value");
                        min_kept = fminf(min_kept, fabsf(X[at]));
                    } else {
                        max_dropped = fmaxf(max_dropped, fabsf(X[at]));
                    }
                }
            }
            cr_expect_eq(kept, 32);
            cr_expect_geq(min_kept, max_dropped * 0.99999f);
        }
    }
    cr_assert_eq(LOCO_OK, loco_codec_decode_add(c, msg, len, dec, n, 1.0f, NULL));
    loco_dct_inverse(coef, rows, cols, want);
    for (size_t i = 0; i < n; i++) {
        cr_assert(fabsf(dec[i] - want[i]) < 1e-5f, "decode == IDCT(sparse) at %zu", i);
    }
    /* keeping every coefficient reconstructs the input */
    loco_codec_free(c);
    loco_codec_state_free(s);
    p.chunk_topk = 4096;
    c = test_codec(p);
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&s, c, rows, cols, NULL));
    float *full = test_roundtrip(c, s, x, n, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        cr_assert(fabsf(full[i] - x[i]) < 1e-4f, "full reconstruction at %zu", i);
    }
    free(full);
    free(msg);
    free(coef);
    free(count);
    free(dec);
    free(want);
    free(x);
    free(X);
    loco_codec_state_free(s);
    loco_codec_free(c);
}

Test(dct, odd_shapes_and_hostile_indices)
{
    loco_codec *c = test_codec(loco_codec_params_default(LOCO_CODEC_DCT_TOPK));
    const size_t shapes[][2] = {{1, 1}, {1, 7}, {67, 3}, {7, 50257}, {1, (1u << 20) + 3}};
    for (int s = 0; s < 5; s++) {
        size_t rows = shapes[s][0], cols = shapes[s][1], n = rows * cols;
        float *x = test_floats(n);
        fill_normal(x, n, n);
        loco_codec_state *st = NULL;
        cr_assert_eq(LOCO_OK, loco_codec_state_init(&st, c, rows, cols, NULL));
        size_t len;
        float *d = test_roundtrip(c, st, x, n, NULL, &len);
        cr_expect_leq(len, loco_codec_bound(c, n));
        free(d);
        loco_codec_state_free(st);
        free(x);
    }
    /* a 1 x 64 message: one chunk, 32 values then 32 six-bit indices (24 bytes) */
    float x[64];
    fill_normal(x, 64, 1);
    size_t len;
    uint8_t *m = test_encode(c, NULL, x, 64, NULL, &len);
    cr_assert_eq(len, 72 + 128 + 24);
    uint8_t *bad = malloc(len);
    memcpy(bad, m, len);
    bad[72 + 128] = bad[72 + 128 + 1] = 0; /* indices 0, 0: not increasing */
    fix_crc(bad, len);
    expect_reject(c, bad, len, 64, LOCO_ERR_FORMAT, "repeated local index");
    memcpy(bad, m, len);
    put_u32(bad + 56, 2);  /* rows 2 x cols 64 != 64 elements */
    fix_crc(bad, len);
    expect_reject(c, bad, len, 64, LOCO_ERR_RANGE, "shape != n");
    memcpy(bad, m, len);
    put_u64(bad + 16, 31);
    fix_crc(bad, len);
    expect_reject(c, bad, len, 64, LOCO_ERR_RANGE, "k != chunks * kc");
    memcpy(bad, m, len);
    put_f32(bad + 72 + 8, NAN);
    fix_crc(bad, len);
    expect_reject(c, bad, len, 64, LOCO_ERR_NONFINITE, "NaN coefficient");
    memcpy(bad, m, len);
    put_u32(bad + 52, 16);
    fix_crc(bad, len);
    expect_reject(c, bad, len, 64, LOCO_ERR_PROTOCOL, "chunk_topk differs from expected");
    free(bad);
    free(m);
    loco_codec_free(c);
}

/* ---- PowerSGD ------------------------------------------------------------------------------------ */

Test(powersgd, full_rank_reconstructs_and_p_is_orthonormal)
{
    const size_t shapes[][2] = {{20, 12}, {12, 20}, {17, 17}, {1, 9}};
    for (int s = 0; s < 4; s++) {
        size_t rows = shapes[s][0], cols = shapes[s][1], n = rows * cols;
        float *m = test_floats(n);
        fill_normal(m, n, 40 + s);
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_POWERSGD);
        p.rank = (int)(rows < cols ? rows : cols);
        loco_codec *c = test_codec(p);
        loco_codec_state *st = NULL;
        cr_assert_eq(LOCO_OK, loco_codec_state_init(&st, c, rows, cols, NULL));
        size_t len;
        float *d = test_roundtrip(c, st, m, n, NULL, &len);
        cr_expect_eq(len, 72 + 4 * (size_t)p.rank * (rows + cols));
        double num = 0, den = 0;
        for (size_t i = 0; i < n; i++) {
            num += (double)(d[i] - m[i]) * (d[i] - m[i]);
            den += (double)m[i] * m[i];
        }
        cr_expect_lt(sqrt(num / den), 1e-5, "%zu x %zu: relative error %g", rows, cols,
                     sqrt(num / den));
        /* P^T P = I */
        uint8_t *msg = test_encode(c, st, m, n, NULL, &len);
        float *P = (float *)(msg + 72);
        for (int a = 0; a < p.rank; a++) {
            for (int b = 0; b < p.rank; b++) {
                double dot = 0;
                for (size_t i = 0; i < rows; i++) {
                    dot += (double)P[i * p.rank + a] * P[i * p.rank + b];
                }
                cr_expect(fabs(dot - (a == b)) < 1e-5, "P^T P [%d][%d] = %g", a, b, dot);
            }
        }
        free(msg);
        free(d);
        free(m);
        loco_codec_state_free(st);
        loco_codec_free(c);
    }
}

Test(powersgd, warm_start_improves_a_fixed_matrix_step_over_step)
{
    const size_t rows = 60, cols = 40, n = rows * cols;
    float *m = test_floats(n);
    /* a matrix with a decaying spectrum: sum_k 2^-k u_k v_k^T + noise */
    loco_rng r;
    loco_rng_init(&r, 3, 3);
    for (int k = 0; k < 10; k++) {
        float u[60], v[40];
        for (size_t i = 0; i < rows; i++) {
            u[i] = loco_rng_normal(&r);
        }
        for (size_t j = 0; j < cols; j++) {
            v[j] = loco_rng_normal(&r);
        }
        for (size_t i = 0; i < rows; i++) {
            for (size_t j = 0; j < cols; j++) {
                m[i * cols + j] += ldexpf(u[i] * v[j], -k);
            }
        }
    }
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_POWERSGD);
    p.rank = 2;
    loco_codec *c = test_codec(p);
    loco_codec_state *st = NULL;
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&st, c, rows, cols, NULL));
    double prev = INFINITY, first = 0;
    for (int step = 0; step < 8; step++) {
        float *d = test_roundtrip(c, st, m, n, NULL, NULL);
        double e = 0;
        for (size_t i = 0; i < n; i++) {
            e += (double)(d[i] - m[i]) * (d[i] - m[i]);
        }
        cr_expect_leq(e, prev * (1 + 1e-6), "step %d: error %g after %g", step, e, prev);
        first = 0 == step ? e : first;
        prev = e;
        free(d);
    }
    cr_expect_lt(prev, 0.9 * first, "power iteration did not improve: %g -> %g", first, prev);
    /* a zero matrix sends zeros and does not kill the warm start */
    float *zero = test_floats(n);
    float *d = test_roundtrip(c, st, zero, n, NULL, NULL);
    free(d);
    loco_codec_buffer buf[2];
    cr_assert_eq(1, loco_codec_state_buffers(st, buf));
    double qn = 0;
    for (size_t i = 0; i < buf[0].len; i++) {
        qn += (double)buf[0].data[i] * buf[0].data[i];
    }
    cr_expect_gt(qn, 0.0, "Q died");
    free(zero);
    free(m);
    loco_codec_state_free(st);
    loco_codec_free(c);
}

Test(stateful, dgc_and_powersgd_bytes_do_not_depend_on_threads)
{
    const size_t rows = 300, cols = 700, n = rows * cols;
    float *x = test_floats(n);
    fill_normal(x, n, 77);
    const loco_codec_id ids[] = {LOCO_CODEC_DGC, LOCO_CODEC_POWERSGD, LOCO_CODEC_DCT_TOPK};
    int saved = omp_get_max_threads();
    for (int c = 0; c < 3; c++) {
        loco_codec *codec = test_codec(loco_codec_params_default(ids[c]));
        uint8_t *m[2];
        size_t len[2];
        for (int t = 0; t < 2; t++) {
            omp_set_num_threads(t ? 3 : 1);
            loco_codec_state *st = NULL;
            cr_assert_eq(LOCO_OK, loco_codec_state_init(&st, codec, rows, cols, NULL));
            loco_codec_ctx ctx = {4, 0, 1, 2};
            free(test_encode(codec, st, x, n, &ctx, &len[t]));
            ctx.step = 1;
            m[t] = test_encode(codec, st, x, n, &ctx, &len[t]);
            loco_codec_state_free(st);
        }
        cr_expect(len[0] == len[1] && 0 == memcmp(m[0], m[1], len[0]), "%s differs",
                  loco_codec_name(ids[c]));
        free(m[0]);
        free(m[1]);
        loco_codec_free(codec);
    }
    omp_set_num_threads(saved);
    free(x);
}

Test(powersgd, restored_warm_start_continues_identically)
{
    const size_t rows = 24, cols = 16, n = rows * cols;
    float *m = test_floats(n);
    fill_normal(m, n, 31);
    loco_codec *c = test_codec(loco_codec_params_default(LOCO_CODEC_POWERSGD));
    loco_codec_state *a = NULL, *b = NULL;
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&a, c, rows, cols, NULL));
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&b, c, rows, cols, NULL));
    size_t len1, len2;
    free(test_encode(c, a, m, n, NULL, &len1));
    free(test_encode(c, a, m, n, NULL, &len1));
    /* checkpoint a's Q into b */
    loco_codec_buffer ba[2], bb[2];
    cr_assert_eq(1, loco_codec_state_buffers(a, ba));
    cr_assert_eq(1, loco_codec_state_buffers(b, bb));
    cr_assert_str_eq(ba[0].name, "powersgd.q");
    memcpy(bb[0].data, ba[0].data, ba[0].len * sizeof(float));
    loco_codec_state_mark_restored(b);
    uint8_t *m1 = test_encode(c, a, m, n, NULL, &len1);
    uint8_t *m2 = test_encode(c, b, m, n, NULL, &len2);
    cr_expect(len1 == len2 && 0 == memcmp(m1, m2, len1), "restored state differs");
    free(m1);
    free(m2);
    loco_codec_state_free(a);
    loco_codec_state_free(b);
    loco_codec_free(c);
    free(m);
}

Test(powersgd, hostile_messages)
{
    const size_t rows = 8, cols = 6, n = 48;
    float x[48];
    fill_normal(x, n, 2);
    loco_codec *c = test_codec(loco_codec_params_default(LOCO_CODEC_POWERSGD));
    loco_codec_state *st = NULL;
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&st, c, rows, cols, NULL));
    size_t len;
    uint8_t *good = test_encode(c, st, x, n, NULL, &len);
    uint8_t *m = malloc(len);
    memcpy(m, good, len);
    put_u32(m + 52, 7); /* rank 7 > cols 6 */
    fix_crc(m, len);
    expect_reject(NULL, m, len, n, LOCO_ERR_RANGE, "rank beyond the shape");
    memcpy(m, good, len);
    put_u32(m + 56, 4);
    put_u32(m + 60, 12); /* 4 x 12 = 48 elements, but factors of 4 x (4 + 12) floats */
    fix_crc(m, len);
    expect_reject(NULL, m, len, n, LOCO_ERR_TRUNCATED, "shape whose factors exceed the payload");
    memcpy(m, good, len);
    put_f32(m + 72 + 20, INFINITY);
    fix_crc(m, len);
    expect_reject(NULL, m, len, n, LOCO_ERR_NONFINITE, "Inf factor");
    memcpy(m, good, len);
    put_u64(m + 16, 3);
    fix_crc(m, len);
    expect_reject(NULL, m, len, n, LOCO_ERR_FORMAT, "k set on PowerSGD");
    free(m);
    free(good);
    loco_codec_state_free(st);
    loco_codec_free(c);
}

/* ---- L-GreCo ------------------------------------------------------------------------------------- */

Test(lgreco, dp_equals_brute_force_and_respects_the_budget)
{
    loco_rng r;
    loco_rng_init(&r, 11, 12);
    for (int trial = 0; trial < 300; trial++) {
        int L = 1 + (int)loco_rng_below(&r, 6), C = 4;
        loco_lgreco_option opts[6 * 4];
        for (int l = 0; l < L; l++) {
            /* more bytes buy less error, with noise so that fronts are irregular */
            for (int c = 0; c < C; c++) {
                opts[l * C + c].bytes = (size_t)(100 * (c + 1) + loco_rng_below(&r, 90));
                opts[l * C + c].error = (double)(C - c) * (0.5 + loco_rng_uniform(&r)) * (l + 1);
            }
        }
        /* budget: the error of the uniform default (candidate 1), or a random one */
        double budget = 0;
        for (int l = 0; l < L; l++) {
            budget += opts[l * C + 1].error;
        }
        if (trial % 3 == 2) {
            budget *= 0.5 + loco_rng_uniform(&r);
        }
        int dp[6], bf[6];
        size_t dp_bytes = 0, bf_bytes = 0;
        double dp_err = 0, bf_err = 0;
        loco_status s1 = loco_lgreco_solve(opts, L, C, budget, dp, &dp_bytes, &dp_err, NULL);
        loco_status s2 = loco_lgreco_brute_force(opts, L, C, budget, bf, &bf_bytes, &bf_err);
        cr_assert_eq(s1, s2, "trial %d: feasibility differs", trial);
        if (LOCO_OK != s1) {
            continue;
        }
        cr_assert_eq(dp_bytes, bf_bytes, "trial %d: DP %zu bytes, brute force %zu", trial,
                     dp_bytes, bf_bytes);
        cr_assert_leq(dp_err, budget, "trial %d: over budget", trial);
        size_t b = 0;
        double e = 0;
        for (int l = 0; l < L; l++) {
            b += opts[l * C + dp[l]].bytes;
            e += opts[l * C + dp[l]].error;
        }
        cr_assert_eq(b, dp_bytes, "choices do not add up");
        cr_assert_eq(e, dp_err);
        if (trial % 3 != 2) {
            size_t uniform = 0;
            for (int l = 0; l < L; l++) {
                uniform += opts[l * C + 1].bytes;
            }
            cr_assert_leq(dp_bytes, uniform, "worse than the uniform default");
        }
    }
    loco_lgreco_option tight[2] = {{5.0, 10}, {4.0, 20}};
    int ch[1];
    cr_expect_eq(LOCO_ERR_RANGE, loco_lgreco_solve(tight, 1, 2, 3.0, ch, NULL, NULL, NULL));
}

Test(lgreco, large_instances_stay_within_budget)
{
    loco_rng r;
    loco_rng_init(&r, 5, 6);
    enum { L = 120, C = 6 };
    static loco_lgreco_option opts[L * C];
    double budget = 0;
    for (int l = 0; l < L; l++) {
        for (int c = 0; c < C; c++) {
            opts[l * C + c].bytes = (size_t)((c + 1) * 1000 + loco_rng_below(&r, 999));
            opts[l * C + c].error = (C - c) * (1 + loco_rng_uniform(&r));
        }
        budget += opts[l * C + 2].error;
    }
    int choice[L];
    size_t bytes;
    double err;
    cr_assert_eq(LOCO_OK, loco_lgreco_solve(opts, L, C, budget, choice, &bytes, &err, NULL));
    cr_expect_leq(err, budget);
    size_t uniform = 0;
    for (int l = 0; l < L; l++) {
        uniform += opts[l * C + 2].bytes;
    }
    cr_expect_lt(bytes, uniform, "adaptive %zu vs uniform %zu bytes", bytes, uniform);
}

Test(lgreco, measure_real_codecs)
{
    const size_t rows = 32, cols = 64, n = rows * cols;
    float *x = test_floats(n);
    fill_normal(x, n, 6);
    loco_codec_params base = loco_codec_params_default(LOCO_CODEC_MAXMIN);
    const double bits[] = {2, 4, 8};
    loco_codec_params cands[3];
    for (int c = 0; c < 3; c++) {
        cr_assert_eq(LOCO_OK, loco_lgreco_vary(&base, bits[c], &cands[c], NULL));
    }
    loco_lgreco_option opts[3];
    loco_codec_ctx ctx = {1, 0, 0, 0};
    cr_assert_eq(LOCO_OK, loco_lgreco_measure(cands, 3, x, rows, cols, &ctx, opts, NULL));
    cr_expect(opts[0].error > opts[1].error && opts[1].error > opts[2].error, "error falls with bits");
    cr_expect(opts[0].bytes < opts[1].bytes && opts[1].bytes < opts[2].bytes, "bytes grow with bits");
    loco_codec_params bad;
    cr_expect_eq(LOCO_ERR_CONFIG, loco_lgreco_vary(&base, 9, &bad, NULL));
    loco_codec_params sign = loco_codec_params_default(LOCO_CODEC_SIGN);
    cr_expect_eq(LOCO_ERR_CONFIG, loco_lgreco_vary(&sign, 2, &bad, NULL));
    cr_expect(loco_lgreco_due(0, 100) && loco_lgreco_due(300, 100) && !loco_lgreco_due(301, 100));
    free(x);
}
