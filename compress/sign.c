/* compress/sign.c — sign compression with a scale (EF-signSGD, Karimireddy et al. 2019):
 * each value becomes +s or -s with s = ||bucket||_1 / len, the mean magnitude. One bit per value
 * (1 = negative; zero encodes as +s). Biased: use it inside error feedback (compress/ef.h).
 * bucket 0 (the default) gives one scale per message, as in the paper. Rounding is always
 * deterministic; params.stochastic is ignored. */
#include "quant_impl.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

static loco_status sign_scales(const loco_codec_params *p, int bits, const loco_qstats *st,
                               size_t len, float *scales)
{
    scales[0] = len > 0 ? (float)(st->sumabs / (double)len) : 0.0f;
    return LOCO_OK;
}

/* The codes, packed one bit each, LSB first (loco_bitpack's layout): bit i is x[i] < 0 (-0.0
 * is not below zero, so it encodes as +s). With AVX2 the mask of 8 compares is one byte. */
static void sign_quantize_packed(const float *x, size_t len, const float *scales, int bits,
                                 uint8_t *packed)
{
    size_t i = 0;
#if defined(__AVX2__)
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 32 <= len; i += 32) {
        uint32_t word = 0;
        for (int j = 0; j < 4; j++) {
            __m256 below = _mm256_cmp_ps(_mm256_loadu_ps(x + i + 8 * j), zero, _CMP_LT_OQ);
            word |= (uint32_t)_mm256_movemask_ps(below) << (8 * j);
        }
        memcpy(packed + i / 8, &word, 4);
    }
#endif
    for (; i < len; i += 8) { /* a byte at a time; the last one's unused bits stay zero */
        size_t m = len - i < 8 ? len - i : 8;
        uint8_t byte = 0;
        for (size_t j = 0; j < m; j++) {
            byte |= (uint8_t)((x[i + j] < 0.0f) << j);
        }
        packed[i / 8] = byte;
    }
}

/* out[i] += bit i ? -v : v straight from the packed bits (LSB first): with AVX2, each byte is
 * broadcast to 8 lanes, each lane tests its own bit and selects -v or v. */
static void sign_dequant_add_packed(const uint8_t *packed, size_t len, const float *scales,
                                    int bits, float scale, float *out)
{
    float v = scale * scales[0];
    size_t i = 0;
#if defined(__AVX2__)
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 plus = _mm256_set1_ps(v), minus = _mm256_set1_ps(-v);
    for (; i + 8 <= len; i += 8) {
        __m256i b = _mm256_and_si256(_mm256_set1_epi32(packed[i / 8]), lane_bit);
        __m256 neg = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, lane_bit));
        float *o = out + i;
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), _mm256_blendv_ps(plus, minus, neg)));
    }
#endif
    for (; i < len; i++) {
        out[i] += (packed[i / 8] >> (i % 8)) & 1 ? -v : v;
    }
}

static const loco_qkind sign_kind = {
    "sign", false, 1, 1, 1, false, 1, LOCO_QSTAT_SUMABS, NULL,
    sign_scales, NULL, loco_qcheck_nonneg_scale, NULL, sign_dequant_add_packed, true,
    sign_quantize_packed,
};

LOCO_QUANT_OPS(sign, sign_kind);
