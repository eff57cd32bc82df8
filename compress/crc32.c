/* compress/crc32.c — CRC-32 by carry-less multiplication folding, zlib for the rest (crc32.h).
 *
 * The reflected CRC-32 of a message M is M(x) x^32 mod P(x) (bit-reversed, with the customary
 * inversions). Folding keeps four 128-bit accumulators; each step multiplies an accumulator's two
 * 64-bit halves by x^(512+64) and x^512 mod P (the constants k1, k2) and adds the next 64
 * bytes, which leaves the remainder mod P unchanged. The four are then folded into one with
 * x^(128+64), x^128 mod P (k3, k4), reduced from 128 to 64 and 32 bits (k4, k5) and finished
 * with Barrett reduction (mu = x^64 / P, and P itself). All constants are bit-reflected 33-bit
 * values, as the Intel paper tabulates them for this polynomial.
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

/* The raw (pre-inverted) CRC state over len bytes, len >= 64 and a multiple of 16. */
static uint32_t crc_fold_blocks(uint32_t state, const uint8_t *buf, size_t len)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596ll, 0x0154442bd4ll);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009ell, 0x01751997d0ll);
    const __m128i k5 = _mm_set_epi64x(0, 0x0163cd6124ll);
    const __m128i poly = _mm_set_epi64x(0x01f7011641ll, 0x01db710641ll);
    const __m128i low32 = _mm_setr_epi32(-1, 0, -1, 0);

    __m128i x0 = _mm_loadu_si128((const __m128i *)(buf + 0));
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
    /* four accumulators into one, then the remaining 16-byte blocks */
    x0 = crc_fold(x0, k3k4, x1);
    x0 = crc_fold(x0, k3k4, x2);
    x0 = crc_fold(x0, k3k4, x3);
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
