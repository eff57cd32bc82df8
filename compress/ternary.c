/* compress/ternary.c — TernGrad (Wen et al., NeurIPS 2017): each value becomes one of
 * {-s, 0, +s} with a per-bucket scaler s.
 *
 *   s = max |x| over the bucket, or with clipping (clip_sigma = c > 0, TernGrad uses 2.5)
 *   s = min(c * std(x), max |x|): values with |x| >= s always become sign(x) * s.
 *   stochastic: x -> sign(x) * s with probability |x| / s, else 0 (unbiased where |x| <= s);
 *   nearest:    x -> sign(x) * s when |x| >= s / 2, else 0.
 * Trits (0 = zero, 1 = +s, 2 = -s) pack 5 per byte (1.6 bits per value, quant_impl.h).
 * bucket 0 gives TernGrad's per-tensor (per-message) scaler.
 */
#include "quant_impl.h"

#include <float.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

static loco_status ternary_scales(const loco_codec_params *p, int bits, const loco_qstats *st,
                                  size_t len, float *scales)
{
    float absmax = loco_bits_f32(st->absmax_bits);
    float s = absmax;
    if (p->clip_sigma > 0.0f && len > 0) {
        double mean = st->sum / (double)len;
        double var = st->sumsq / (double)len - mean * mean;
        double clip = (double)p->clip_sigma * sqrt(var > 0.0 ? var : 0.0);
        if (clip < (double)absmax) {
            s = (float)clip;
        }
    }
    scales[0] = s;
    return LOCO_OK;
}

/* Trit of one value: keep (1 + sign bit: 2 for negative) when the draw is below t * 65536 with
 * t = |x| / s the keep probability (>= 1 beyond the clip: always kept), or for nearest (draw <
 * 0) when t * 2 >= 1; else 0. Integer selects so the loops vectorise. */
static inline __attribute__((always_inline)) uint32_t ternary_trit(float x, float t, int draw)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    int keep = draw < 0 ? t * 2.0f >= 1.0f : (float)draw < t * 65536.0f;
    return keep ? 1 + (u >> 31) : 0;
}

/* Trits of len values with t = |x| / scale (divide: a subnormal scale) or |x| * inv; inlined
 * with constant arguments so each variant vectorises. `scaled`: inv already holds inv * 65536
 * and the draws are compared with |x| * inv directly (ternary_quantize says when that is the
 * same decision). Trits are computed in 32-bit lanes and narrowed in a second loop (no byte
 * repacking inside the vector loop). */
static inline __attribute__((always_inline)) void
ternary_trits(const float *x, size_t len, float scale, float inv, bool divide, bool scaled,
              const uint16_t *r, uint8_t *codes)
{
    uint32_t c32[LOCO_CODEC_TILE];
    for (size_t i = 0; i < len; i++) {
        float t = divide ? fabsf(x[i]) / scale : fabsf(x[i]) * inv;
        if (scaled) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            c32[i] = (float)r[i] < t ? 1 + (u >> 31) : 0;
        } else {
            c32[i] = ternary_trit(x[i], t, NULL != r ? (int)r[i] : -1);
        }
    }
    for (size_t i = 0; i < len; i++) {
        codes[i] = (uint8_t)c32[i];
    }
}

static void ternary_quantize(const float *x, size_t len, const float *scales, int bits,
                             const uint16_t *r, uint8_t *codes)
{
    bool divide;
    float inv = loco_qinverse(scales[0], &divide);
    if (divide) {
        ternary_trits(x, len, scales[0], inv, true, false, r, codes);
    } else if (NULL != r && inv >= 1.0f && inv < 0x1p111f) {
        /* One product fewer: |x| * (inv * 65536) decides every draw as (|x| * inv) * 65536
         * does when inv >= 1. Where |x| * inv is normal, scaling by 2^16 commutes with
         * rounding; where it is subnormal (and x != 0, so at least 2^-149), both forms lie in
         * (0, 2^-110], below which only the draw 0 falls; an overflow is +Inf either way. */
        ternary_trits(x, len, scales[0], inv * 65536.0f, false, true, r, codes);
    } else if (NULL != r) {
        ternary_trits(x, len, scales[0], inv, false, false, r, codes);
    } else {
        ternary_trits(x, len, scales[0], inv, false, false, NULL, codes);
    }
}


/* Straight from the packed bytes (validated), through the constant trit table. */
#if defined(__AVX2__)
/* The 5 trits of each byte value as bytes 0..4 of a word (loco_trit_table as 40-bit words),
 * built by the preprocessor. */
#define TRIT_W(v)                                                                                \
    ((uint64_t)((v) % 3) | (uint64_t)((v) / 3 % 3) << 8 | (uint64_t)((v) / 9 % 3) << 16 |        \
     (uint64_t)((v) / 27 % 3) << 24 | (uint64_t)((v) / 81 % 3) << 32)
#define TRIT_W3(v) TRIT_W(v), TRIT_W((v) + 1), TRIT_W((v) + 2)
#define TRIT_W9(v) TRIT_W3(v), TRIT_W3((v) + 3), TRIT_W3((v) + 6)
#define TRIT_W27(v) TRIT_W9(v), TRIT_W9((v) + 9), TRIT_W9((v) + 18)
#define TRIT_W81(v) TRIT_W27(v), TRIT_W27((v) + 27), TRIT_W27((v) + 54)
static const uint64_t trit_words[243] = {TRIT_W81(0), TRIT_W81(81), TRIT_W81(162)};
#endif

/* out[i] += v[trit i] (v = 0, +s, -s) from the packed bytes: with AVX2, 8 bytes (40 trits) at a
 * time are laid out as five 8-trit words in registers (byte g's 40 bits at bit 40 g), then
 * added 8 lanes at a time by compare-and-select; one element at a time elsewhere. Every element
 * gets exactly one add, as v[trit]. */
static void ternary_dequant_add_packed(const uint8_t *packed, size_t len, const float *scales,
                                       int bits, float scale, float *out)
{
    const float v[3] = {0.0f, scale * scales[0], -(scale * scales[0])};
    size_t i = 0;
#if defined(__AVX2__)
    const __m256 plus = _mm256_set1_ps(v[1]), minus = _mm256_set1_ps(v[2]);
    const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
    for (; i + 40 <= len; i += 40) {
        const uint8_t *p = packed + i / 5;
        uint64_t w[8];
        for (int g = 0; g < 8; g++) {
            w[g] = trit_words[p[g]];
        }
        const uint64_t t[5] = {w[0] | w[1] << 40, w[1] >> 24 | w[2] << 16 | w[3] << 56,
                               w[3] >> 8 | w[4] << 32, w[4] >> 32 | w[5] << 8 | w[6] << 48,
                               w[6] >> 16 | w[7] << 24};
        for (int k = 0; k < 5; k++) {
            __m256i c = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)t[k]));
            __m256 add = _mm256_or_ps(
                _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(c, one)), plus),
                _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(c, two)), minus));
            float *o = out + i + 8 * (size_t)k;
            _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), add));
        }
    }
#endif
    for (; i < len; i++) {
        out[i] += v[loco_trit_table[packed[i / 5]][i % 5]];
    }
}

static const loco_qkind ternary_kind = {
    "ternary", true, 0, 0, 0, true, 1, LOCO_QSTAT_SUM, NULL,
    ternary_scales, ternary_quantize, loco_qcheck_nonneg_scale, NULL, ternary_dequant_add_packed,
    false, NULL,
};

LOCO_QUANT_OPS(ternary, ternary_kind);
