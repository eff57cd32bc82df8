/* tests/test_compress_stats.c — compress/: statistical unbiasedness of the stochastic codecs
 * (max-min, QSGD, TernGrad, FP4) by z-scores over thousands of encodings, with Philox and with ARS
 * draws (codec.rng), QSGD's variance bound,
 * the check that deterministic (nearest) rounding is detected as biased, and ternary's
 * decisions against the documented rule where fp32 is at its edges. */
#include "test_compress_util.h"
#include "compress/codec_impl.h" /* loco_codec_stream */

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
    for (int mode = 0; mode < 3; mode++) { /* stochastic with Philox, with ARS; nearest */
        bool stoch = mode < 2;
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
        p.bits = 3;
        p.stochastic = stoch;
        p.rng = 1 == mode ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
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
            cr_expect_lt(z.max_abs_z, 5.5, "stochastic (rng %d) max |z| = %g", mode, z.max_abs_z);
            cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "rng %d: mean z = %g", mode,
                         z.mean_z);
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
    for (int ars = 0; ars < 2; ars++) {
        if (ars) {
            loco_codec_free(c);
            p.rng = LOCO_CODEC_RNG_ARS;
            c = test_codec(p);
        }
        zstats z = zscores(c, x, UNBIASED_N, var, UNBIASED_R, 0.0);
        cr_expect_lt(z.max_abs_z, 5.5, "ars %d: max |z| = %g", ars, z.max_abs_z);
        cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "ars %d: mean z = %g", ars,
                     z.mean_z);
    }
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
    for (size_t bs = 0; bs < UNBIASED_N; bs += 512) {
        size_t bl = UNBIASED_N - bs < 512 ? UNBIASED_N - bs : 512;
        double s = absmax_of(x, bs, bl);
        for (size_t j = bs; j < bs + bl; j++) {
            var[j] = s * fabs(x[j]) - (double)x[j] * x[j];
        }
    }
    for (int ars = 0; ars < 2; ars++) {
        p.rng = ars ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
        loco_codec *c = test_codec(p);
        zstats z = zscores(c, x, UNBIASED_N, var, UNBIASED_R, 0.0);
        cr_expect_lt(z.max_abs_z, 5.5, "ternary (ars %d) max |z| = %g", ars, z.max_abs_z);
        cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "ternary (ars %d) mean z = %g",
                     ars, z.mean_z);
        loco_codec_free(c);
    }
    /* FP4: rounding between neighbouring powers of two (or 0 and 2^-6) of the scale */
    for (size_t bs = 0; bs < UNBIASED_N; bs += 512) {
        size_t bl = UNBIASED_N - bs < 512 ? UNBIASED_N - bs : 512;
        double s = absmax_of(x, bs, bl);
        for (size_t j = bs; j < bs + bl; j++) {
            double a = fabs(x[j]) / s;
            double lo = a < 1.0 / 64 ? 0 : exp2(floor(log2(a))), hi = a < 1.0 / 64 ? 1.0 / 64 : 2 * lo;
            var[j] = a >= 1.0 ? 0 : rounding_var((hi - lo) * s, (a - lo) / (hi - lo));
        }
    }
    for (int ars = 0; ars < 2; ars++) {
        loco_codec_params q = loco_codec_params_default(LOCO_CODEC_FP4);
        q.rng = ars ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
        loco_codec *c = test_codec(q);
        zstats z = zscores(c, x, UNBIASED_N, var, UNBIASED_R, 1e-12);
        cr_expect_lt(z.max_abs_z, 5.5, "fp4 (ars %d) max |z| = %g", ars, z.max_abs_z);
        cr_expect_lt(fabs(z.mean_z), 5.0 / sqrt((double)z.used), "fp4 (ars %d) mean z = %g", ars,
                     z.mean_z);
        loco_codec_free(c);
    }
    free(var);
    free(x);
}


/* Every ternary decision against the documented rule (codec.h): element i, with t = |x| * fl(1/s)
 * in fp32, is kept (decoded as sign(x) * s) when its 16-bit draw is below t * 65536, else 0. The
 * encoder forms t * 65536 in one product where that gives the same decisions (s <= 1); the
 * places where it could differ are planted on purpose: subnormal values, and values whose
 * threshold lands next to the draw, at elements whose draw is 0 or 1, in buckets whose scale is
 * below, at and above 1. */
Test(stochastic, ternary_keeps_follow_the_documented_rule_at_fp32_edges)
{
    const size_t n = ((size_t)1 << 20) + 3, bucket = 512;
    const float kinds[4] = {0.5f, 1.0f, 4.0f, 1.5f}; /* bucket scales: inv >= 1 and < 1 */
    loco_codec_ctx ctx = {0x5EEDull, 3, 1, 2};
    uint64_t stream = loco_codec_stream(&ctx);
    uint16_t *draw = malloc(n * sizeof *draw);
    int *kind_of = malloc((n / bucket + 1) * sizeof *kind_of);
    float *x = test_floats(n);
    cr_assert(NULL != draw && NULL != kind_of);
    for (size_t i = 0; i < n; i++) {
        uint32_t w[4];
        loco_rng_block(ctx.seed, stream, i / 8, w);
        draw[i] = (uint16_t)(w[(i % 8) / 2] >> (16 * (i % 2)));
    }
    /* buckets holding a draw of 0 take the scales in turn, so every kind gets such an element */
    size_t zeros = 0;
    for (size_t b = 0; b * bucket < n; b++) {
        kind_of[b] = (int)(b % 4);
    }
    for (size_t i = 0; i < n; i++) {
        if (0 == draw[i] && i % bucket != 0) {
            kind_of[i / bucket] = (int)(zeros++ % 4);
        }
    }
    cr_assert_geq(zeros, 8, "only %zu draws of 0: choose another seed", zeros);
    loco_rng r;
    loco_rng_init(&r, 5, 6);
    /* at draws of 0, each kind of bucket in turn gets these in turn: |x| * inv is 1/4, 1/2
     * (a tie, to even: 0) and 3/4 of the smallest subnormal where s = 4 */
    static const float at_zero[] = {0x1p-149f, 0x1p-148f, 0x3p-149f, 0x1p-130f};
    static const float tiny[] = {0x1p-140f, 0x1.8p-127f, 0x1p-126f, 1e-30f};
    size_t planted = 0, zk = 0;
    for (size_t i = 0; i < n; i++) {
        float s = kinds[kind_of[i / bucket]];
        float sign = loco_rng_uniform(&r) < 0.5f ? -1.0f : 1.0f;
        if (i % bucket == 0) {
            x[i] = s; /* the bucket's max |x|: its scale with clipping off */
        } else if (0 == draw[i]) {
            x[i] = sign * at_zero[zk++ / 4 % 4];
        } else if (1 == draw[i]) {
            x[i] = sign * tiny[planted++ % 4];
        } else if (draw[i] < 64) { /* threshold at the draw or one ulp either side */
            float t = (float)draw[i] / 65536.0f, u = loco_rng_uniform(&r);
            t = u < 1.0f / 3 ? nextafterf(t, 0.0f) : u < 2.0f / 3 ? t : nextafterf(t, 1.0f);
            x[i] = sign * s * t;
        } else {
            x[i] = sign * s * loco_rng_uniform(&r);
        }
    }
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TERNARY);
    p.clip_sigma = 0.0f;
    cr_assert_eq(bucket, (size_t)p.bucket);
    loco_codec *c = test_codec(p);
    float *d = test_roundtrip(c, NULL, x, n, &ctx, NULL);
    size_t kept_tiny = 0, dropped_tiny = 0;
    for (size_t i = 0; i < n; i++) {
        float s = kinds[kind_of[i / bucket]];
        volatile float inv = 1.0f / s, t = fabsf(x[i]) * inv, threshold = t * 65536.0f;
        bool keep = (float)draw[i] < threshold;
        float want = keep ? copysignf(s, x[i]) : 0.0f;
        cr_assert_eq(d[i], want, "element %zu: x %a, s %g, draw %u: decoded %g, the rule gives %g",
                     i, (double)x[i], (double)s, draw[i], (double)d[i], (double)want);
        if (0 == draw[i] && i % bucket != 0) {
            kept_tiny += keep;
            dropped_tiny += !keep;
        }
    }
    /* the planted edges decide both ways: |x| * inv rounded to 0 (s = 4) is never kept */
    cr_expect(kept_tiny > 0 && dropped_tiny > 0, "at draws of 0: %zu kept, %zu dropped",
              kept_tiny, dropped_tiny);
    free(d);
    loco_codec_free(c);
    free(x);
    free(kind_of);
    free(draw);
}

/* codec.rng picks the generator end to end: with Philox and with ARS, every ternary decision is
 * the documented rule applied to that generator's block function (loco_rng_block,
 * loco_rng_ars_block), and the two messages differ. */
Test(stochastic, ternary_decisions_follow_the_chosen_generator)
{
    const size_t n = 100003, bucket = 512;
    loco_codec_ctx ctx = {0xA5A5ull, 8, 2, 1};
    uint64_t stream = loco_codec_stream(&ctx);
    float *x = test_floats(n);
    fill_normal(x, n, 77);
    float *d[2];
    for (int ars = 0; ars < 2; ars++) {
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TERNARY);
        p.clip_sigma = 0.0f;
        p.rng = ars ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
        cr_assert_eq(bucket, (size_t)p.bucket);
        loco_codec *c = test_codec(p);
        d[ars] = test_roundtrip(c, NULL, x, n, &ctx, NULL);
        for (size_t i = 0; i < n; i++) {
            uint32_t w[4];
            if (ars) {
                loco_rng_ars_block(ctx.seed, stream, i / 8, w);
            } else {
                loco_rng_block(ctx.seed, stream, i / 8, w);
            }
            uint16_t draw = (uint16_t)(w[(i % 8) / 2] >> (16 * (i % 2)));
            size_t b0 = i / bucket * bucket, bl = n - b0 < bucket ? n - b0 : bucket;
            float s = absmax_of(x, b0, bl);
            volatile float inv = 1.0f / s, t = fabsf(x[i]) * inv, threshold = t * 65536.0f;
            float want = (float)draw < threshold ? copysignf(s, x[i]) : 0.0f;
            cr_assert_eq(d[ars][i], want, "ars %d, element %zu: x %a, draw %u: decoded %g, want %g",
                         ars, i, (double)x[i], draw, (double)d[ars][i], (double)want);
        }
        loco_codec_free(c);
    }
    cr_expect(0 != memcmp(d[0], d[1], n * sizeof(float)), "Philox and ARS gave the same message");
    free(d[0]);
    free(d[1]);
    free(x);
}

/* The draw of element i of a message under generator rng (codec.h's layout). */
static uint16_t draw_of(loco_codec_rng rng, const loco_codec_ctx *ctx, size_t i)
{
    uint32_t w[4];
    if (LOCO_CODEC_RNG_ARS == rng) {
        loco_rng_ars_block(ctx->seed, loco_codec_stream(ctx), i / 8, w);
    } else {
        loco_rng_block(ctx->seed, loco_codec_stream(ctx), i / 8, w);
    }
    return (uint16_t)(w[(i % 8) / 2] >> (16 * (i % 2)));
}

/* Max-min and FP4 decisions at their edges, against the documented rules, with both generators:
 * buckets whose scale makes t exact (max-min: min 0, max 15, so 4-bit levels of unit 1 and
 * t = x; FP4: max |x| = 1, so t = |x|), and values planted where the rounding decision turns:
 * the fraction times 65536 equal to the element's draw, or one ulp either side.
 *   max-min: level floor(t), + 1 when draw < (t - floor(t)) * 65536;
 *   FP4:     t >= 2^-6: exponent e of t, code e + 7, + 1 when draw < mantissa fraction * 65536;
 *            t < 2^-6: code 1 when draw < t * 64 * 65536, else 0 (zero). */
Test(stochastic, maxmin_and_fp4_follow_the_documented_rules_at_the_draws)
{
    const size_t n = 100003, bucket = 512;
    loco_codec_ctx ctx = {0xFEEDull, 5, 3, 9};
    float *x = test_floats(n);
    for (int ars = 0; ars < 2; ars++) {
        loco_codec_rng rng = ars ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
        for (int fp4 = 0; fp4 < 2; fp4++) {
            loco_rng g;
            loco_rng_init(&g, 17, (uint64_t)(2 * ars + fp4));
            for (size_t i = 0; i < n; i++) {
                uint16_t d = draw_of(rng, &ctx, i);
                uint32_t pick = loco_rng_below(&g, 6);
                float sign = fp4 && loco_rng_uniform(&g) < 0.5f ? -1.0f : 1.0f;
                float v;
                if (!fp4) {
                    v = (float)loco_rng_below(&g, 15) + (float)d / 65536.0f; /* exact */
                } else if (pick < 3) { /* t >= 2^-6: mantissa = draw << 7 */
                    uint32_t field = 121 + loco_rng_below(&g, 6); /* exponent of t */
                    uint32_t bits = field << 23 | (uint32_t)d << 7;
                    memcpy(&v, &bits, 4);
                } else {
                    v = (float)d * 0x1p-22f; /* t < 2^-6 */
                }
                if (pick % 3 == 1) {
                    v = nextafterf(v, 0.0f);
                } else if (pick % 3 == 2) {
                    v = nextafterf(v, 16.0f);
                }
                x[i] = sign * v;
            }
            for (size_t b0 = 0; b0 < n; b0 += bucket) { /* the scales */
                x[b0] = fp4 ? 1.0f : 0.0f;
                if (!fp4 && b0 + 1 < n) {
                    x[b0 + 1] = 15.0f;
                }
            }
            loco_codec_params p = loco_codec_params_default(fp4 ? LOCO_CODEC_FP4
                                                                : LOCO_CODEC_MAXMIN);
            p.bits = 4;
            p.rng = rng;
            cr_assert_eq(bucket, (size_t)p.bucket);
            loco_codec *c = test_codec(p);
            float *dec = test_roundtrip(c, NULL, x, n, &ctx, NULL);
            for (size_t i = 0; i < n; i++) {
                uint16_t d = draw_of(rng, &ctx, i);
                float t = fabsf(x[i]), want;
                if (!fp4) {
                    float level = floorf(t);
                    want = level + ((float)d < (t - level) * 65536.0f ? 1.0f : 0.0f);
                } else if (t >= 0x1p-6f) {
                    uint32_t bits;
                    memcpy(&bits, &t, 4);
                    int e = (int)(bits >> 23) - 127;
                    bool up = t < 1.0f && (uint32_t)d << 7 < (bits & 0x7FFFFFu);
                    want = copysignf(ldexpf(1.0f, e + (int)up), x[i]);
                } else {
                    bool up = (float)d < t * 64.0f * 65536.0f;
                    want = up ? copysignf(0x1p-6f, x[i]) : 0.0f;
                }
                cr_assert_eq(dec[i], want,
                             "%s, %s: element %zu, x %a, draw %u: decoded %a, rule %a",
                             ars ? "ars" : "philox", fp4 ? "fp4" : "maxmin", i, (double)x[i], d,
                             (double)dec[i], (double)want);
            }
            free(dec);
            loco_codec_free(c);
        }
    }
    free(x);
}
