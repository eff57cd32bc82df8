/* tests/test_compress_stats.c — compress/: statistical unbiasedness of the stochastic codecs
 * (max-min, QSGD, TernGrad, FP4) by z-scores over thousands of encodings, QSGD's variance bound,
 * and the check that deterministic (nearest) rounding is detected as biased. */
#include "test_compress_util.h"

/* max |x| over x[start, start + len). */
static float absmax_of(const float *x, size_t start, size_t len)
{
    float m = 0.0f;
    for (size_t j = start; j < start + len; j++) {
        m = fmaxf(m, fabsf(x[j]));
    }
    return m;
}

/* ---- unbiasedness, statistically -------------------------------------------------------------- */

/* Draw R encodings of x (different steps) and z-score the mean of each coordinate with the known
 * per-coordinate variance var[i]. Coordinates whose variance is below min_var are skipped (the
 * 16-bit rounding draws resolve probabilities to 2^-16, codec.h). */
typedef struct zstats {
    double max_abs_z, mean_z;
    size_t used;
} zstats;

static zstats zscores(loco_codec *c, const float *x, size_t n, const double *var, int R,
                      double min_var)
{
    double *sum = calloc(n, sizeof *sum);
    float *dec = test_floats(n);
    size_t cap = loco_codec_bound(c, n);
    uint8_t *msg = malloc(cap);
    for (int r = 0; r < R; r++) {
        loco_codec_ctx ctx = {99, (uint64_t)r, 3, 5};
        size_t len;
        cr_assert_eq(LOCO_OK, loco_codec_encode(c, NULL, x, n, &ctx, msg, cap, &len));
        memset(dec, 0, n * sizeof *dec);
        cr_assert_eq(LOCO_OK, loco_codec_decode_add(c, msg, len, dec, n, 1.0f, &ctx));
        for (size_t i = 0; i < n; i++) {
            sum[i] += dec[i];
        }
    }
    zstats z = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        if (var[i] <= min_var) {
            continue;
        }
        double zi = (sum[i] / R - x[i]) / sqrt(var[i] / R);
        z.max_abs_z = fmax(z.max_abs_z, fabs(zi));
        z.mean_z += zi;
        z.used++;
    }
    z.mean_z /= (double)(z.used ? z.used : 1);
    free(sum);
    free(dec);
    free(msg);
    return z;
}

#define UNBIASED_N 10000
#define UNBIASED_R 4096

/* Variance of stochastic rounding between two grid points a step apart, p = the fraction. */
static double rounding_var(double step, double p) { return step * step * p * (1 - p); }

Test(unbiased, maxmin_stochastic_passes_and_nearest_is_detected_as_biased, .timeout = 300)
{
    float *x = test_floats(UNBIASED_N);
    fill_normal(x, UNBIASED_N, 1234);
    double *var = calloc(UNBIASED_N, sizeof *var);
    for (int stoch = 1; stoch >= 0; stoch--) {
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
        p.bits = 3;
        p.stochastic = stoch;
        loco_codec *c = test_codec(p);
        for (size_t bs = 0; bs < UNBIASED_N; bs += 512) {
            size_t bl = UNBIASED_N - bs < 512 ? UNBIASED_N - bs : 512;
            float mn = x[bs], mx = x[bs];
            for (size_t j = bs; j < bs + bl; j++) {
                mn = fminf(mn, x[j]);
                mx = fmaxf(mx, x[j]);
            }
            double unit = (float)(((double)mx - mn) / 7);
            for (size_t j = bs; j < bs + bl; j++) {
                double t = (x[j] - mn) / unit;
                var[j] = rounding_var(unit, t - floor(t));
            }
        }
        zstats z = zscores(c, x, UNBIASED_N, var, UNBIASED_R, 1e-4 * 0.0);
        if (stoch) {
            cr_expect_lt(z.max_abs_z, 5.5, "stochastic max |z| = %g", z.max_abs_z);
            cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "mean z = %g", z.mean_z);
        } else {
            cr_expect_gt(z.max_abs_z, 50.0, "nearest rounding not detected: max |z| = %g",
                         z.max_abs_z);
        }
        loco_codec_free(c);
    }
    free(var);
    free(x);
}

Test(unbiased, qsgd_and_its_variance_bound, .timeout = 300)
{
    float *x = test_floats(UNBIASED_N);
    fill_normal(x, UNBIASED_N, 4321);
    double *var = calloc(UNBIASED_N, sizeof *var);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_QSGD);
    p.bits = 3; /* s = 3 levels */
    p.bucket = 128;
    loco_codec *c = test_codec(p);
    double bound_total = 0, var_total = 0;
    for (size_t bs = 0; bs < UNBIASED_N; bs += 128) {
        size_t bl = UNBIASED_N - bs < 128 ? UNBIASED_N - bs : 128;
        double ss = 0;
        for (size_t j = bs; j < bs + bl; j++) {
            ss += (double)x[j] * x[j];
        }
        double norm = (float)sqrt(ss), step = norm / 3;
        for (size_t j = bs; j < bs + bl; j++) {
            double l = fabs(x[j]) / step;
            var[j] = rounding_var(step, l - floor(l));
            var_total += var[j];
        }
        /* QSGD Lemma 3.1: E||Q(v) - v||^2 <= min(d / s^2, sqrt(d) / s) ||v||^2 */
        bound_total += fmin((double)bl / 9, sqrt((double)bl) / 3) * ss;
    }
    cr_expect_leq(var_total, bound_total, "variance %g above QSGD's bound %g", var_total,
                  bound_total);
    zstats z = zscores(c, x, UNBIASED_N, var, UNBIASED_R, 0.0);
    cr_expect_lt(z.max_abs_z, 5.5, "max |z| = %g", z.max_abs_z);
    cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "mean z = %g", z.mean_z);
    loco_codec_free(c);
    free(var);
    free(x);
}

Test(unbiased, ternary_without_clipping_and_fp4, .timeout = 300)
{
    float *x = test_floats(UNBIASED_N);
    fill_normal(x, UNBIASED_N, 999);
    double *var = calloc(UNBIASED_N, sizeof *var);
    /* TernGrad: Var = s |x| - x^2 */
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TERNARY);
    p.clip_sigma = 0.0f;
    loco_codec *c = test_codec(p);
    for (size_t bs = 0; bs < UNBIASED_N; bs += 512) {
        size_t bl = UNBIASED_N - bs < 512 ? UNBIASED_N - bs : 512;
        double s = absmax_of(x, bs, bl);
        for (size_t j = bs; j < bs + bl; j++) {
            var[j] = s * fabs(x[j]) - (double)x[j] * x[j];
        }
    }
    zstats z = zscores(c, x, UNBIASED_N, var, UNBIASED_R, 0.0);
    cr_expect_lt(z.max_abs_z, 5.5, "ternary max |z| = %g", z.max_abs_z);
    cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "ternary mean z = %g", z.mean_z);
    loco_codec_free(c);
    /* FP4: rounding between neighbouring powers of two (or 0 and 2^-6) of the scale */
    c = test_codec(loco_codec_params_default(LOCO_CODEC_FP4));
    for (size_t bs = 0; bs < UNBIASED_N; bs += 512) {
        size_t bl = UNBIASED_N - bs < 512 ? UNBIASED_N - bs : 512;
        double s = absmax_of(x, bs, bl);
        for (size_t j = bs; j < bs + bl; j++) {
            double a = fabs(x[j]) / s;
            double lo = a < 1.0 / 64 ? 0 : exp2(floor(log2(a))), hi = a < 1.0 / 64 ? 1.0 / 64 : 2 * lo;
            var[j] = a >= 1.0 ? 0 : rounding_var((hi - lo) * s, (a - lo) / (hi - lo));
        }
    }
    z = zscores(c, x, UNBIASED_N, var, UNBIASED_R, 1e-12);
    cr_expect_lt(z.max_abs_z, 5.5, "fp4 max |z| = %g", z.max_abs_z);
    cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "fp4 mean z = %g", z.mean_z);
    loco_codec_free(c);
    free(var);
    free(x);
}

