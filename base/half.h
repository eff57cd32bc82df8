/* base/half.h — fp32 <-> bf16 / fp16 conversions (round to nearest even, NaN kept as NaN).
 *
 * Used by the fp16/bf16 codecs, bf16 collectives and the GPU path's host-side checks. Pure inline
 * functions with no state.
 */
#ifndef LOCO_BASE_HALF_H
#define LOCO_BASE_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t loco_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float loco_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t loco_f32_to_bf16(float f)
{
    uint32_t u = loco_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
        return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    }
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float loco_bf16_to_f32(uint16_t h) { return loco_bits_f32((uint32_t)h << 16); }

static inline uint16_t loco_f32_to_f16(float f)
{
    uint32_t u = loco_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7FFFFFFFu;
    if (abs > 0x7F800000u) {
        return (uint16_t)(sign | 0x7E00u); /* NaN */
    }
    if (abs >= 0x477FF000u) {
        return (uint16_t)(sign | 0x7C00u); /* overflow (rounds to >= 65520) or Inf -> Inf */
    }
    if (abs < 0x38800000u) {
        /* Result is subnormal or zero: value = abs * 2^24 in units of 2^-24, rounded to even. */
        float scaled = loco_bits_f32(abs) * 16777216.0f; /* exact: power-of-two scaling */
        uint32_t q = (uint32_t)scaled;
        float rem = scaled - (float)q;
        if (rem > 0.5f || (rem == 0.5f && (q & 1u))) {
            q++;
        }
        return (uint16_t)(sign | q);
    }
    /* Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits to even. */
    uint32_t mant_round = abs + 0x0FFFu + ((abs >> 13) & 1u);
    return (uint16_t)(sign | ((mant_round - 0x38000000u) >> 13));
}

static inline float loco_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (0 == exp) {
        float v = (float)mant * (1.0f / 16777216.0f); /* subnormal: mant * 2^-24 */
        return loco_bits_f32(loco_f32_bits(v) | sign);
    }
    if (31 == exp) {
        return loco_bits_f32(sign | 0x7F800000u | (mant << 13));
    }
    return loco_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

#endif /* LOCO_BASE_HALF_H */
