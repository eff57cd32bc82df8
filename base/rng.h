/* base/rng.h — counter-based random numbers (Philox4x32-10 and ARS-4x32, Salmon et al., SC'11:
 * "Parallel random numbers: as easy as 1, 2, 3").
 *
 * A draw is a pure function of (seed, stream, counter): no hidden state, so results do not depend
 * on thread count, machine or call order. loco keys streams by what a number is for, e.g.
 * stream = loco_rng_stream_id(step, rank, tensor) and counter = element / 4 for a codec's
 * stochastic rounding, so every worker can reproduce any other worker's draws.
 *
 * Layout: key = {seed lo, seed hi}; counter block = {counter lo, counter hi, stream lo, stream hi}.
 *
 * Philox is the default everywhere (a GPU computes it as fast as a CPU). ARS is AES rounds keyed
 * by a Weyl sequence: with AES-NI a CPU makes its draws about five times faster than Philox's
 * (compress/draws.c), but a GPU has no AES unit, so only CPU-side codecs offer it.
 */
#ifndef LOCO_BASE_RNG_H
#define LOCO_BASE_RNG_H

#include <stdint.h>

/* The raw Philox4x32 bijection with 10 rounds: out = philox(ctr, key). */
void loco_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Four 32-bit draws for (seed, stream, counter). */
static inline void loco_rng_block(uint64_t seed, uint64_t stream, uint64_t counter,
                                  uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), (uint32_t)stream,
                             (uint32_t)(stream >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    loco_philox4x32_10(ctr, key, out);
}

/* The raw ARS-4x32 bijection with `rounds` rounds (1..10), as Random123's ars4x32_R: v = ctr ^
 * key, then rounds - 1 AES rounds (aesenc) and one last round (aesenclast), round r keyed by key +
 * r * (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B) (two 64-bit lanes, words 0-1 and 2-3). Words are
 * the 128-bit block's little-endian 32-bit words. Portable C (a table-driven AES round); the
 * AES-NI form in compress/draws.c gives the same bits. */
void loco_ars4x32(const uint32_t ctr[4], const uint32_t key[4], int rounds, uint32_t out[4]);

/* ARS with 7 rounds, the Random123 default (its authors found no statistical flaw from 5). */
#define LOCO_ARS_ROUNDS 7

/* Four 32-bit ARS-7 draws for (seed, stream, counter): counter block as loco_rng_block's,
 * key = {seed lo, seed hi, 0, 0}. */
static inline void loco_rng_ars_block(uint64_t seed, uint64_t stream, uint64_t counter,
                                      uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), (uint32_t)stream,
                             (uint32_t)(stream >> 32)};
    const uint32_t key[4] = {(uint32_t)seed, (uint32_t)(seed >> 32), 0, 0};
    loco_ars4x32(ctr, key, LOCO_ARS_ROUNDS, out);
}

/* A 32-bit draw to a float in [0, 1) with 24 random bits (exactly representable). */
static inline float loco_u32_to_unit(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

/* A 32-bit draw to a double in [0, 1). */
static inline double loco_u32_to_unit_double(uint32_t x) { return (double)x * (1.0 / 4294967296.0); }

/* Mix three 64-bit identifiers (e.g. step, rank, tensor index) into one stream id (splitmix64
 * finalizer chain; distinct inputs give distinct streams with overwhelming probability). */
uint64_t loco_rng_stream_id(uint64_t a, uint64_t b, uint64_t c);

/* A sequential generator over one (seed, stream): the counter advances by one per 4 draws.
 * Its whole state is {seed, stream, counter, used}, which checkpoints save and restore. */
typedef struct loco_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter; /* next block to generate */
    uint32_t block[4];
    uint32_t used; /* draws consumed from block (4 = empty) */
} loco_rng;

void loco_rng_init(loco_rng *rng, uint64_t seed, uint64_t stream);
uint32_t loco_rng_u32(loco_rng *rng);
/* Uniform float in [0, 1). */
float loco_rng_uniform(loco_rng *rng);
/* Standard normal (Box-Muller on two uniforms). */
float loco_rng_normal(loco_rng *rng);
/* Uniform integer in [0, n) for n >= 1 (Lemire's multiply-shift with rejection: unbiased). */
uint32_t loco_rng_below(loco_rng *rng, uint32_t n);

#endif /* LOCO_BASE_RNG_H */
