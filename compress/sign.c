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

static void sign_quantize(const float *x, size_t len, const float *scales, int bits,
                          const uint16_t *r, uint8_t *codes)
{
    uint32_t c32[LOCO_CODEC_TILE]; /* 32-bit codes, narrowed after: no byte repacking */
    for (size_t i = 0; i < len; i++) { /* x < 0 in integers: sign bit set and not -0.0 */
        uint32_t u;
        memcpy(&u, &x[i], 4);
        c32[i] = (u >> 31) & (uint32_t)(0 != (u & 0x7FFFFFFFu));
    }
    for (size_t i = 0; i < len; i++) {
        codes[i] = (uint8_t)c32[i];
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
    sign_scales, sign_quantize, loco_qcheck_nonneg_scale, NULL, sign_dequant_add_packed, true,
};

LOCO_QUANT_OPS(sign, sign_kind);
