/* base/rng.c — Philox4x32-10, ARS-4x32 and a sequential generator over Philox (see rng.h). */
#include "rng.h"

#include <math.h>
#include <stdbool.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void loco_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

/* ---- ARS: AES rounds, byte by byte -------------------------------------------------------- */

/* AES's S-box (FIPS-197 5.1.1: the inverse in GF(2^8) mod x^8 + x^4 + x^3 + x + 1, then the
 * affine map). Checked through Random123's ARS known answers (tests/test_base.c) and, where the
 * CPU has AES-NI, against the aesenc instruction over thousands of blocks (tests/test_compress.c,
 * draws_follow_the_documented_layout_for_philox_and_ars). */
static const uint8_t aes_sbox[256] = {
    0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76,
    0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0,
    0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15,
    0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75,
    0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84,
    0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf,
    0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8,
    0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2,
    0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73,
    0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb,
    0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79,
    0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08,
    0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a,
    0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e,
    0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf,
    0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16,
};

/* Multiplication by x in GF(2^8). */
static inline uint8_t aes_xtime(uint8_t a) { return (uint8_t)((a << 1) ^ ((a >> 7) * 0x1B)); }

/* One AES encryption round on the 16-byte state s (byte 4c + r is row r of column c), as
 * aesenc (mix = true) or aesenclast (mix = false): SubBytes, ShiftRows, MixColumns, ^ key. */
static void aes_round(uint8_t s[16], const uint8_t key[16], bool mix)
{
    uint8_t t[16];
    for (int c = 0; c < 4; c++) {
        for (int r = 0; r < 4; r++) { /* row r moves r columns left */
            t[4 * c + r] = aes_sbox[s[4 * ((c + r) % 4) + r]];
        }
    }
    for (int c = 0; c < 4; c++) {
        uint8_t *a = t + 4 * c;
        if (mix) {
            uint8_t all = (uint8_t)(a[0] ^ a[1] ^ a[2] ^ a[3]), a0 = a[0];
            a[0] ^= (uint8_t)(all ^ aes_xtime((uint8_t)(a[0] ^ a[1])));
            a[1] ^= (uint8_t)(all ^ aes_xtime((uint8_t)(a[1] ^ a[2])));
            a[2] ^= (uint8_t)(all ^ aes_xtime((uint8_t)(a[2] ^ a[3])));
            a[3] ^= (uint8_t)(all ^ aes_xtime((uint8_t)(a[3] ^ a0)));
        }
        for (int r = 0; r < 4; r++) {
            s[4 * c + r] = (uint8_t)(a[r] ^ key[4 * c + r]);
        }
    }
}

/* 128-bit value <-> 16 little-endian bytes, as words w[0..3] (w[0] lowest). */
static void words_to_bytes(const uint32_t w[4], uint8_t b[16])
{
    for (int i = 0; i < 16; i++) {
        b[i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
    }
}

void loco_ars4x32(const uint32_t ctr[4], const uint32_t key[4], int rounds, uint32_t out[4])
{
    uint64_t k_lo = (uint64_t)key[0] | (uint64_t)key[1] << 32;
    uint64_t k_hi = (uint64_t)key[2] | (uint64_t)key[3] << 32;
    uint8_t s[16], kb[16];
    uint32_t v[4] = {ctr[0] ^ key[0], ctr[1] ^ key[1], ctr[2] ^ key[2], ctr[3] ^ key[3]};
    words_to_bytes(v, s);
    for (int r = 1; r <= rounds; r++) {
        k_lo += 0x9E3779B97F4A7C15ull;
        k_hi += 0xBB67AE8584CAA73Bull;
        const uint32_t kw[4] = {(uint32_t)k_lo, (uint32_t)(k_lo >> 32), (uint32_t)k_hi,
                                (uint32_t)(k_hi >> 32)};
        words_to_bytes(kw, kb);
        aes_round(s, kb, r < rounds);
    }
    for (int w = 0; w < 4; w++) {
        out[w] = (uint32_t)s[4 * w] | (uint32_t)s[4 * w + 1] << 8 | (uint32_t)s[4 * w + 2] << 16 |
                 (uint32_t)s[4 * w + 3] << 24;
    }
}

static inline uint64_t splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t loco_rng_stream_id(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = splitmix64_mix(a + 0x9E3779B97F4A7C15ull);
    h = splitmix64_mix(h ^ (b + 0x632BE59BD9B4E019ull));
    h = splitmix64_mix(h ^ (c + 0x85EBCA77C2B2AE63ull));
    return h;
}

void loco_rng_init(loco_rng *rng, uint64_t seed, uint64_t stream)
{
    rng->seed = seed;
    rng->stream = stream;
    rng->counter = 0;
    rng->block[0] = rng->block[1] = rng->block[2] = rng->block[3] = 0;
    rng->used = 4;
}

uint32_t loco_rng_u32(loco_rng *rng)
{
    if (rng->used >= 4) {
        loco_rng_block(rng->seed, rng->stream, rng->counter, rng->block);
        rng->counter++;
        rng->used = 0;
    }
    return rng->block[rng->used++];
}

float loco_rng_uniform(loco_rng *rng) { return loco_u32_to_unit(loco_rng_u32(rng)); }

float loco_rng_normal(loco_rng *rng)
{
    /* u1 in (0, 1] so the log is finite. */
    double u1 = ((double)loco_rng_u32(rng) + 1.0) * (1.0 / 4294967296.0);
    double u2 = loco_u32_to_unit_double(loco_rng_u32(rng));
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t loco_rng_below(loco_rng *rng, uint32_t n)
{
    uint64_t m = (uint64_t)loco_rng_u32(rng) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)loco_rng_u32(rng) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}
