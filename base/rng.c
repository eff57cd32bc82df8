/* base/rng.c — Philox4x32-10 and a sequential generator over it (see rng.h). */
#include "rng.h"

#include <math.h>

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
