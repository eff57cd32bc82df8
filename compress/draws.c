/* compress/draws.c — bulk random draws for stochastic rounding (the layout codec.h documents)
 * and the finiteness check every encoder runs.
 *
 * Philox4x32-10 is computed for 8 counters at once in structure-of-arrays form so the compiler
 * vectorises the 32x32->64-bit multiplies; the result equals base/rng.h's loco_rng_block
 * (tests/test_compress.c checks this). */
#include "codec_impl.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Philox4x32-10 of counters ctr0 .. ctr0+7 (stream in the high words): out[word][lane]. */
static void philox_x8(uint64_t seed, uint64_t stream, uint64_t ctr0, uint32_t out[4][8])
{
    uint32_t c0[8], c1[8], c2[8], c3[8];
    for (int l = 0; l < 8; l++) {
        uint64_t ctr = ctr0 + (uint64_t)l;
        c0[l] = (uint32_t)ctr;
        c1[l] = (uint32_t)(ctr >> 32);
        c2[l] = (uint32_t)stream;
        c3[l] = (uint32_t)(stream >> 32);
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        for (int l = 0; l < 8; l++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * c0[l];
            uint64_t p1 = (uint64_t)PHILOX_M1 * c2[l];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
            c0[l] = n0;
            c1[l] = (uint32_t)p1;
            c2[l] = n2;
            c3[l] = (uint32_t)p0;
        }
    }
    for (int l = 0; l < 8; l++) {
        out[0][l] = c0[l];
        out[1][l] = c1[l];
        out[2][l] = c2[l];
        out[3][l] = c3[l];
    }
}

void loco_codec_draws16(uint64_t seed, uint64_t stream, size_t first, size_t len, uint16_t *r)
{
    /* Element i uses block i / 8, word (i % 8) / 2, half i % 2; 8 blocks cover 64 elements. */
    size_t i = first, end = first + len;
    while (i < end) {
        uint64_t block0 = (uint64_t)(i / 64) * 8;
        uint32_t w[4][8];
        philox_x8(seed, stream, block0, w);
        size_t group_end = (size_t)(block0 + 8) * 8;
        for (; i < end && i < group_end; i++) {
            size_t e = i % 64;
            uint32_t word = w[(e % 8) / 2][e / 8];
            r[i - first] = (uint16_t)(word >> (16 * (e % 2)));
        }
    }
}

bool loco_all_finite(const float *x, size_t n)
{
    uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        bad |= (uint32_t)((u & 0x7F800000u) == 0x7F800000u);
    }
    return 0 == bad;
}
