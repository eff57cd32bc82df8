/* compress/crc32.c — CRC-32 by carry-less multiplication folding, zlib for the rest (crc32.h).
 *
 * The reflected CRC-32 of a message M is M(x) x^32 mod P(x) (bit-reversed, with the customary
 * inversions). Folding keeps four 128-bit accumulators; each step multiplies an accumulator's two
 * 64-bit halves by x^(512+32) and x^(512-32) mod P (the constants k1, k2) and adds the next 64
 * bytes, which leaves the remainder mod P unchanged. The four are then folded into one with
 * x^(128+32), x^(128-32) mod P (k3, k4), reduced from 128 to 64 and 32 bits (k4, k5) and
 * finished with Barrett reduction (mu = x^64 / P, and P itself). All constants are bit-reflected
 * 33-bit values, as the Intel paper tabulates them for this polynomial (x^n mod P reflected and
 * shifted left by one).
 *
 * With VPCLMULQDQ the same fold runs on every 128-bit lane of ymm (zmm) registers: four
 * accumulators of 32 (64) bytes jump 1024 (2048) bits per step, with x^(1024+-32)
 * (x^(2048+-32)) mod P; consecutive registers are then folded 256 (512: k1, k2) bits and the
 * lanes 128 (k3, k4). The wide constants were computed by that rule, which reproduces k1..k5.
 */
#include "crc32.h"

#include <zlib.h>

#if defined(__PCLMUL__) && defined(__SSE4_1__)
#include <immintrin.h>

/* One fold: acc * (k_lo, k_hi) + next. */
static inline __m128i crc_fold(__m128i acc, __m128i k, __m128i next)
{
    __m128i lo = _mm_clmulepi64_si128(acc, k, 0x00);
    __m128i hi = _mm_clmulepi64_si128(acc, k, 0x11);
    return _mm_xor_si128(_mm_xor_si128(lo, hi), next);
}

#if defined(__VPCLMULQDQ__) && defined(__AVX512F__)
/* The same fold on four 128-bit lanes at once. */
static inline __m512i crc_fold512(__m512i acc, __m512i k, __m512i next)
{
    __m512i lo = _mm512_clmulepi64_epi128(acc, k, 0x00);
    __m512i hi = _mm512_clmulepi64_epi128(acc, k, 0x11);
    return _mm512_ternarylogic_epi64(lo, hi, next, 0x96); /* lo ^ hi ^ next */
}

/* Fold 256 bytes at a time with four zmm accumulators (x^(2048+-32) mod P), then the four into
 * one (x^(512+-32): k1, k2) and its four lanes into x0 (k3, k4). Consumes a multiple of 256
 * bytes (at least 256) of the len >= 256 at *buf; returns x0 with the state folded in. */
static __m128i crc_fold_wide(uint32_t state, const uint8_t **buf, size_t *len)
{
    const __m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x01322d1430ll, 0x011542778all));
    const __m512i k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(0x01c6e41596ll, 0x0154442bd4ll));
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009ell, 0x01751997d0ll);
    const uint8_t *p = *buf;
    __m512i z[4];
    for (int j = 0; j < 4; j++) {
        z[j] = _mm512_loadu_si512((const void *)(p + 64 * j));
    }
    z[0] = _mm512_xor_si512(z[0], _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)state)));
    p += 256;
    size_t left = *len - 256;
    while (left >= 256) {
        for (int j = 0; j < 4; j++) {
            z[j] = crc_fold512(z[j], k2048, _mm512_loadu_si512((const void *)(p + 64 * j)));
        }
        p += 256;
        left -= 256;
    }
    z[0] = crc_fold512(z[0], k512, z[1]);
    z[0] = crc_fold512(z[0], k512, z[2]);
    z[0] = crc_fold512(z[0], k512, z[3]);
    __m128i x0 = _mm512_extracti32x4_epi32(z[0], 0);
    x0 = crc_fold(x0, k3k4, _mm512_extracti32x4_epi32(z[0], 1));
    x0 = crc_fold(x0, k3k4, _mm512_extracti32x4_epi32(z[0], 2));
    x0 = crc_fold(x0, k3k4, _mm512_extracti32x4_epi32(z[0], 3));
    *buf = p;
    *len = left;
    return x0;
}
#define LOCO_CRC_WIDE 256
#elif defined(__VPCLMULQDQ__) && defined(__AVX2__)
/* The same fold on two 128-bit lanes at once. */
static inline __m256i crc_fold256(__m256i acc, __m256i k, __m256i next)
{
    __m256i lo = _mm256_clmulepi64_epi128(acc, k, 0x00);
    __m256i hi = _mm256_clmulepi64_epi128(acc, k, 0x11);
    return _mm256_xor_si256(_mm256_xor_si256(lo, hi), next);
}

/* Fold 128 bytes at a time with four ymm accumulators (x^(1024+-32) mod P), then the four into
 * one (x^(256+-32)) and its two lanes into x0 (k3, k4). Consumes a multiple of 128 bytes (at
 * least 128) of the len >= 128 at *buf; returns x0 with the state folded in. */
static __m128i crc_fold_wide(uint32_t state, const uint8_t **buf, size_t *len)
{
    const __m256i k1024 = _mm256_broadcastsi128_si256(_mm_set_epi64x(0x014a7fe880ll,
                                                                     0x01e88ef372ll));
    const __m256i k256 = _mm256_broadcastsi128_si256(_mm_set_epi64x(0x015a546366ll,
                                                                    0x00f1da05aall));
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009ell, 0x01751997d0ll);
    const uint8_t *p = *buf;
    __m256i y[4];
    for (int j = 0; j < 4; j++) {
        y[j] = _mm256_loadu_si256((const __m256i *)(p + 32 * j));
    }
    y[0] = _mm256_xor_si256(y[0], _mm256_inserti128_si256(_mm256_setzero_si256(),
                                                          _mm_cvtsi32_si128((int)state), 0));
    p += 128;
    size_t left = *len - 128;
    while (left >= 128) {
        for (int j = 0; j < 4; j++) {
            y[j] = crc_fold256(y[j], k1024, _mm256_loadu_si256((const __m256i *)(p + 32 * j)));
        }
        p += 128;
        left -= 128;
    }
    y[0] = crc_fold256(y[0], k256, y[1]);
    y[0] = crc_fold256(y[0], k256, y[2]);
    y[0] = crc_fold256(y[0], k256, y[3]);
    __m128i x0 = crc_fold(_mm256_castsi256_si128(y[0]), k3k4, _mm256_extracti128_si256(y[0], 1));
    *buf = p;
    *len = left;
    return x0;
}
#define LOCO_CRC_WIDE 128
#endif

/* The raw (pre-inverted) CRC state over len bytes, len >= 64 and a multiple of 16. */
static uint32_t crc_fold_blocks(uint32_t state, const uint8_t *buf, size_t len)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596ll, 0x0154442bd4ll);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009ell, 0x01751997d0ll);
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124ll);
    const __m128i poly = _mm_set_epi64x(0x01f7011641ll, 0x01db710641ll);
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);

    __m128i x0;
#if defined(LOCO_CRC_WIDE)
    if (len >= 2 * LOCO_CRC_WIDE) {
        x0 = crc_fold_wide(state, &buf, &len);
    } else
#endif
    {
        x0 = _mm_loadu_si128((const __m128i *)(buf + 0));
        __m128i x1 = _mm_loadu_si128((const __m128i *)(buf + 16));
        __m128i x2 = _mm_loadu_si128((const __m128i *)(buf + 32));
        __m128i x3 = _mm_loadu_si128((const __m128i *)(buf + 48));
        x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)state));
        buf += 64;
        len -= 64;
        while (len >= 64) {
            x0 = crc_fold(x0, k1k2, _mm_loadu_si128((const __m128i *)(buf + 0)));
            x1 = crc_fold(x1, k1k2, _mm_loadu_si128((const __m128i *)(buf + 16)));
            x2 = crc_fold(x2, k1k2, _mm_loadu_si128((const __m128i *)(buf + 32)));
            x3 = crc_fold(x3, k1k2, _mm_loadu_si128((const __m128i *)(buf + 48)));
            buf += 64;
            len -= 64;
        }
        /* four accumulators into one */
        x0 = crc_fold(x0, k3k4, x1);
        x0 = crc_fold(x0, k3k4, x2);
        x0 = crc_fold(x0, k3k4, x3);
    }
    /* the remaining 16-byte blocks */
    while (len >= 16) {
        x0 = crc_fold(x0, k3k4, _mm_loadu_si128((const __m128i *)buf));
        buf += 16;
        len -= 16;
    }
    /* 128 -> 64 bits */
    __m128i t = _mm_clmulepi64_si128(x0, k3k4, 0x10);
    x0 = _mm_xor_si128(_mm_srli_si128(x0, 8), t);
    /* 64 -> 32 bits */
    t = _mm_srli_si128(x0, 4);
    x0 = _mm_and_si128(x0, low32);
    x0 = _mm_clmulepi64_si128(x0, k5, 0x00);
    x0 = _mm_xor_si128(x0, t);
    /* Barrett reduction */
    t = _mm_and_si128(x0, low32);
    t = _mm_clmulepi64_si128(t, poly, 0x10);
    t = _mm_and_si128(t, low32);
    t = _mm_clmulepi64_si128(t, poly, 0x00);
    x0 = _mm_xor_si128(x0, t);
    return (uint32_t)_mm_extract_epi32(x0, 1);
}

uint32_t loco_crc32(uint32_t crc, const uint8_t *buf, size_t len)
{
    if (len < 64) {
        return (uint32_t)crc32_z(crc, buf, len);
    }
    size_t body = len & ~(size_t)15;
    uint32_t state = crc_fold_blocks(~crc, buf, body);
    return (uint32_t)crc32_z(~state, buf + body, len - body);
}
#else
uint32_t loco_crc32(uint32_t crc, const uint8_t *buf, size_t len)
{
    return (uint32_t)crc32_z(crc, buf, len);
}
#endif
