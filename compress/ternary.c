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
 * with constant arguments so each variant vectorises. Trits are computed in 32-bit lanes and
 * narrowed in a second loop (no byte repacking inside the vector loop). */
static inline __attribute__((always_inline)) void
ternary_trits(const float *x, size_t len, float scale, float inv, bool divide, const uint16_t *r,
              uint8_t *codes)
{
    uint32_t c32[LOCO_CODEC_TILE];
    for (size_t i = 0; i < len; i++) {
        float t = divide ? fabsf(x[i]) / scale : fabsf(x[i]) * inv;
        c32[i] = ternary_trit(x[i], t, NULL != r ? (int)r[i] : -1);
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
        ternary_trits(x, len, scales[0], inv, true, r, codes);
    } else if (NULL != r) {
        ternary_trits(x, len, scales[0], inv, false, r, codes);
    } else {
        ternary_trits(x, len, scales[0], inv, false, NULL, codes);
    }
}

static void ternary_dequant_add(const uint8_t *codes, size_t len, const float *scales, int bits,
                                float scale, float *out)
{
    const float lut[3] = {0.0f, scale * scales[0], -(scale * scales[0])};
    for (size_t i = 0; i < len; i++) {
        out[i] += lut[codes[i]];
    }
}

/* Straight from the packed bytes (validated), through the constant trit table. */
static void ternary_dequant_add_packed(const uint8_t *packed, size_t len, const float *scales,
                                       int bits, float scale, float *out)
{
    const float v[3] = {0.0f, scale * scales[0], -(scale * scales[0])};
    size_t full = len / 5;
    for (size_t g = 0; g < full; g++) {
        const uint8_t *t = loco_trit_table[packed[g]];
        float *o = out + 5 * g;
        o[0] += v[t[0]];
        o[1] += v[t[1]];
        o[2] += v[t[2]];
        o[3] += v[t[3]];
        o[4] += v[t[4]];
    }
    for (size_t j = 0; j < len - 5 * full; j++) {
        out[5 * full + j] += v[loco_trit_table[packed[full]][j]];
    }
}

static const loco_qkind ternary_kind = {
    "ternary", true, 0, 0, 0, true, 1, LOCO_QSTAT_SUM, NULL,
    ternary_scales, ternary_quantize, loco_qcheck_nonneg_scale, ternary_dequant_add,
    ternary_dequant_add_packed, false,
};

LOCO_QUANT_OPS(ternary, ternary_kind);
