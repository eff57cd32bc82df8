/* compress/quant_stats.c — the statistics of a quantizer's bucket (quant_impl.h): min, max, the
 * largest magnitude and the fixed-order double sums, one tile or two at a time. Every vector path
 * (AVX2, AVX-512) gives the plain loop's bits: min/max are order-free (a zero extreme's sign is
 * not specified; the scales write +0) and the sums keep the plain loop's lanes and order. */
#include "quant_impl.h"

#include <float.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

void loco_qstats_identity(loco_qstats *st)
{
    st->min = FLT_MAX;
    st->max = -FLT_MAX;
    st->absmax_bits = 0;
    st->sum = st->sumsq = st->sumabs = 0.0;
}

void loco_qstats_merge(loco_qstats *a, const loco_qstats *b)
{
    a->min = b->min < a->min ? b->min : a->min;
    a->max = b->max > a->max ? b->max : a->max;
    a->absmax_bits = b->absmax_bits > a->absmax_bits ? b->absmax_bits : a->absmax_bits;
    a->sum += b->sum;
    a->sumsq += b->sumsq;
    a->sumabs += b->sumabs;
}

#if defined(__AVX2__)
/* Horizontal reductions of 8 lanes. */
static inline float hmin8(__m256 v)
{
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)));
}

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

static inline uint32_t hmaxu8(__m256i v)
{
    __m128i m = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4E));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(m);
}
#endif

/* min, max (when want_minmax) and max(bits & 0x7FFFFFFF) of x[0..len). Which of -0 and +0 comes
 * out as a zero extreme is not specified (the scales write a zero as +0); with a NaN in the input
 * min and max are meaningless, but *absmax_bits is >= 0x7F800000. Written with AVX2 where the
 * compiler targets it: GCC 13 leaves the plain loop's float min/max reductions scalar, a
 * dependent vminss per element (5x slower on a Sapphire Rapids core). Two accumulators of each
 * kind halve the dependency chains. */
static void qstats_extremes(const float *x, size_t len, bool want_minmax, float *min, float *max,
                            uint32_t *absmax_bits)
{
    uint32_t am = 0;
    float mn = FLT_MAX, mx = -FLT_MAX;
    size_t i = 0;
#if defined(__AVX2__)
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
    __m256 mn0 = _mm256_set1_ps(FLT_MAX), mn1 = mn0, mx0 = _mm256_set1_ps(-FLT_MAX), mx1 = mx0;
    __m256i am0 = _mm256_setzero_si256(), am1 = am0;
    if (want_minmax) {
        for (; i + 16 <= len; i += 16) {
            __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
            am0 = _mm256_max_epu32(am0, _mm256_and_si256(_mm256_castps_si256(v0), magnitude));
            am1 = _mm256_max_epu32(am1, _mm256_and_si256(_mm256_castps_si256(v1), magnitude));
            mn0 = _mm256_min_ps(mn0, v0);
            mn1 = _mm256_min_ps(mn1, v1);
            mx0 = _mm256_max_ps(mx0, v0);
            mx1 = _mm256_max_ps(mx1, v1);
        }
    } else {
        for (; i + 16 <= len; i += 16) {
            __m256i v0 = _mm256_loadu_si256((const __m256i *)(x + i));
            __m256i v1 = _mm256_loadu_si256((const __m256i *)(x + i + 8));
            am0 = _mm256_max_epu32(am0, _mm256_and_si256(v0, magnitude));
            am1 = _mm256_max_epu32(am1, _mm256_and_si256(v1, magnitude));
        }
    }
    am = hmaxu8(_mm256_max_epu32(am0, am1));
    mn = hmin8(_mm256_min_ps(mn0, mn1));
    mx = hmax8(_mm256_max_ps(mx0, mx1));
#endif
#pragma omp simd reduction(max : am) reduction(min : mn) reduction(max : mx)
    for (size_t j = i; j < len; j++) {
        uint32_t u;
        memcpy(&u, &x[j], 4);
        u &= 0x7FFFFFFFu;
        am = u > am ? u : am;
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    *absmax_bits = am;
    *min = mn;
    *max = mx;
}

/* Running sums of a tile in 8 interleaved double lanes (lane l takes elements l, l + 8, ... in
 * order): s (sum), q (sum of squares) and a (the maximum of the magnitude bits). */
typedef struct qlanes {
    double s[8], q[8];
    uint32_t a[8];
} qlanes;

/* The lanes of `count` (1 or 2) tiles over their first `full` elements (a multiple of 8): q
 * always, s and a when with_sum. Every lane is one chain of dependent adds, so a lone tile runs
 * at the adder's latency, not its throughput; with AVX2 the chains of two tiles are interleaved
 * and a pair costs about what one tile did (AVX-512: one register per kind of sum). The adds are
 * the plain loop's, in its order. A float's square is exact in double (48 significant bits), so
 * the vector paths fuse it into the add (vfmadd) with the same bits as the product-then-add. */
static inline __attribute__((always_inline)) void qlanes_sum(const float *const *x, int count,
                                                             size_t full, bool with_sum,
                                                             qlanes *lanes)
{
    memset(lanes, 0, (size_t)count * sizeof *lanes);
#if defined(__AVX512F__)
    /* all 8 lanes of a tile in one register: one conversion and one fused add per 8 */
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
    __m512d s[2], q[2];
    __m256i am[2];
    for (int g = 0; g < count; g++) {
        s[g] = q[g] = _mm512_setzero_pd();
        am[g] = _mm256_setzero_si256();
    }
    for (size_t i = 0; i < full; i += 8) {
        for (int g = 0; g < count; g++) {
            __m256 v = _mm256_loadu_ps(x[g] + i);
            __m512d d = _mm512_cvtps_pd(v);
            q[g] = _mm512_fmadd_pd(d, d, q[g]); /* d * d is exact: the add's bits */
            if (with_sum) {
                s[g] = _mm512_add_pd(s[g], d);
                am[g] = _mm256_max_epu32(am[g],
                                         _mm256_and_si256(_mm256_castps_si256(v), magnitude));
            }
        }
    }
    for (int g = 0; g < count; g++) {
        _mm512_storeu_pd(lanes[g].s, s[g]);
        _mm512_storeu_pd(lanes[g].q, q[g]);
        _mm256_storeu_si256((__m256i *)lanes[g].a, am[g]);
    }
#elif defined(__AVX2__)
    const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
    __m256d s0[2], s1[2], q0[2], q1[2];
    __m256i am[2];
    for (int g = 0; g < count; g++) {
        s0[g] = s1[g] = q0[g] = q1[g] = _mm256_setzero_pd();
        am[g] = _mm256_setzero_si256();
    }
    for (size_t i = 0; i < full; i += 8) {
        for (int g = 0; g < count; g++) {
            /* each half converted straight from memory (no extract) */
            __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x[g] + i));     /* lanes 0..3 */
            __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(x[g] + i + 4)); /* lanes 4..7 */
#if defined(__FMA__)
            q0[g] = _mm256_fmadd_pd(lo, lo, q0[g]); /* lo * lo is exact: the add's bits */
            q1[g] = _mm256_fmadd_pd(hi, hi, q1[g]);
#else
            q0[g] = _mm256_add_pd(q0[g], _mm256_mul_pd(lo, lo));
            q1[g] = _mm256_add_pd(q1[g], _mm256_mul_pd(hi, hi));
#endif
            if (with_sum) {
                s0[g] = _mm256_add_pd(s0[g], lo);
                s1[g] = _mm256_add_pd(s1[g], hi);
                __m256i v = _mm256_loadu_si256((const __m256i *)(x[g] + i));
                am[g] = _mm256_max_epu32(am[g], _mm256_and_si256(v, magnitude));
            }
        }
    }
    for (int g = 0; g < count; g++) {
        _mm256_storeu_pd(lanes[g].s, s0[g]);
        _mm256_storeu_pd(lanes[g].s + 4, s1[g]);
        _mm256_storeu_pd(lanes[g].q, q0[g]);
        _mm256_storeu_pd(lanes[g].q + 4, q1[g]);
        _mm256_storeu_si256((__m256i *)lanes[g].a, am[g]);
    }
#else
    for (int g = 0; g < count; g++) {
        qlanes *L = &lanes[g];
        for (size_t i = 0; i < full; i += 8) {
            for (int l = 0; l < 8; l++) {
                double v = x[g][i + (size_t)l];
                L->q[l] += v * v;
                if (with_sum) {
                    uint32_t u;
                    memcpy(&u, &x[g][i + (size_t)l], 4);
                    u &= 0x7FFFFFFFu;
                    L->a[l] = u > L->a[l] ? u : L->a[l];
                    L->s[l] += v;
                }
            }
        }
    }
#endif
}

/* The tail x[full..len) into the lanes, then the lanes into st (added 0..7). */
static void qlanes_finish(const float *x, size_t full, size_t len, bool with_sum, qlanes *L,
                          loco_qstats *st)
{
    for (size_t i = full; i < len; i++) {
        L->q[i % 8] += (double)x[i] * x[i];
        if (with_sum) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            u &= 0x7FFFFFFFu;
            L->a[i % 8] = u > L->a[i % 8] ? u : L->a[i % 8];
            L->s[i % 8] += x[i];
        }
    }
    for (int l = 0; l < 8; l++) {
        if (with_sum) {
            st->absmax_bits = L->a[l] > st->absmax_bits ? L->a[l] : st->absmax_bits;
        }
        st->sum += L->s[l];
        st->sumsq += L->q[l];
    }
}

/* st->sumabs of x[0..len) over 8 interleaved double lanes (sign's scale: not a hot loop). */
static void qstats_sumabs(const float *x, size_t len, loco_qstats *st)
{
    size_t full = len / 8 * 8;
    double a[8] = {0};
    for (size_t i = 0; i < full; i += 8) {
        for (int l = 0; l < 8; l++) {
            a[l] += fabs((double)x[i + (size_t)l]);
        }
    }
    for (size_t i = full; i < len; i++) {
        a[i % 8] += fabs((double)x[i]);
    }
    for (int l = 0; l < 8; l++) {
        st->sumabs += a[l];
    }
}

/* Statistics of `count` (1 or 2) tiles of len elements each: sums over 8 interleaved double
 * lanes, lanes added 0..7. Only the statistics in `want` are computed; a NaN/Inf input shows as
 * absmax_bits >= 0x7F800000 (from the bits for min/max and absmax, from a non-finite double sum
 * otherwise: double sums of fp32 values cannot overflow). */
static inline __attribute__((always_inline)) void qstats_tiles(const float *const *x, int count,
                                                               size_t len, unsigned want,
                                                               loco_qstats *st)
{
    const bool sums = 0 != (want & (LOCO_QSTAT_SUM | LOCO_QSTAT_SUMSQ | LOCO_QSTAT_SUMABS));
    for (int g = 0; g < count; g++) {
        loco_qstats_identity(&st[g]);
        if ((want & LOCO_QSTAT_MINMAX) || !sums) { /* min, max and the NaN/Inf check */
            float mn, mx;
            qstats_extremes(x[g], len, 0 != (want & LOCO_QSTAT_MINMAX), &mn, &mx,
                            &st[g].absmax_bits);
            if (want & LOCO_QSTAT_MINMAX) {
                st[g].min = mn;
                st[g].max = mx;
            }
        }
    }
    size_t full = len / 8 * 8;
    if (want & (LOCO_QSTAT_SUM | LOCO_QSTAT_SUMSQ)) {
        const bool with_sum = 0 != (want & LOCO_QSTAT_SUM); /* sum, sumsq and absmax */
        qlanes lanes[2];
        qlanes_sum(x, count, full, with_sum, lanes);
        for (int g = 0; g < count; g++) {
            qlanes_finish(x[g], full, len, with_sum, &lanes[g], &st[g]);
        }
    }
    for (int g = 0; g < count; g++) {
        if (want & LOCO_QSTAT_SUMABS) {
            qstats_sumabs(x[g], len, &st[g]);
        }
        if (sums && !(isfinite(st[g].sum) && isfinite(st[g].sumsq) && isfinite(st[g].sumabs)) &&
            st[g].absmax_bits < 0x7F800000u) {
            st[g].absmax_bits = 0x7F800000u;
        }
    }
}

/* One tile's statistics (qstats_tiles). */
void loco_qstats_tile(const float *x, size_t len, unsigned want, loco_qstats *st)
{
    qstats_tiles(&x, 1, len, want, st);
}

/* Two tiles' statistics, their sums interleaved (qstats_tiles). */
void loco_qstats_pair(const float *x0, const float *x1, size_t len, unsigned want,
                             loco_qstats st[2])
{
    const float *x[2] = {x0, x1};
    qstats_tiles(x, 2, len, want, st);
}
