/* compress/sign.c — sign compression with a scale (EF-signSGD, Karimireddy et al. 2019):
 * each value becomes +s or -s with s = ||bucket||_1 / len, the mean magnitude. One bit per value
 * (1 = negative; zero encodes as +s). Biased: use it inside error feedback (compress/ef.h).
 * bucket 0 (the default) gives one scale per message, as in the paper. Rounding is always
 * deterministic; params.stochastic is ignored. */
#include "quant_impl.h"

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

static void sign_dequant_add(const uint8_t *codes, size_t len, const float *scales, int bits,
                             float scale, float *out)
{
    float v = scale * scales[0];
    for (size_t i = 0; i < len; i++) {
        out[i] += codes[i] ? -v : v;
    }
}

static const loco_qkind sign_kind = {
    "sign", false, 1, 1, 1, false, 1, LOCO_QSTAT_SUMABS, NULL,
    sign_scales, sign_quantize, loco_qcheck_nonneg_scale, sign_dequant_add, NULL, true,
};

LOCO_QUANT_OPS(sign, sign_kind);
