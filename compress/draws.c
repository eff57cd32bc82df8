/* compress/draws.c — bulk random draws for stochastic rounding (the layout codec.h documents)
 * and the finiteness check every encoder runs.
 *
 * Philox4x32-10 is computed for 8 counters at once with AVX2 (vpmuludq on even and odd lanes)
 * where the compiler targets it (long runs with AVX-512 where available), else one block at a
 * time through base/rng.h; every way the result equals loco_rng_block (tests/test_compress.c
 * checks this on the machine it runs on). ARS-7 (codec.rng = ars) runs on the AES unit: 4
 * blocks per instruction with VAES and AVX-512, 2 with VAES and AVX2, 1 with AES-NI (checked at
 * run time where the build does not target it), else the portable loco_rng_ars_block, which
 * every way equals. */
#include "codec_impl.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#if defined(__AVX2__)

/* hi and lo 32-bit halves of m * c for 8 lanes (vpmuludq handles the even lanes; the odd ones
 * are shifted down first). */
static inline void mulhilo_x8(__m256i c, __m256i m, __m256i *hi, __m256i *lo)
{
    __m256i even = _mm256_mul_epu32(c, m);
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

/* Eight Philox blocks in flight: word w of block l is lane l of c[w]. */
typedef struct philox_x8 {
    __m256i c0, c1, c2, c3;
} philox_x8;

static inline void philox_x8_init(philox_x8 *s, uint64_t stream, uint64_t ctr0)
{
    uint32_t lo[8], hi[8];
    for (int l = 0; l < 8; l++) {
        uint64_t ctr = ctr0 + (uint64_t)l;
        lo[l] = (uint32_t)ctr;
        hi[l] = (uint32_t)(ctr >> 32);
    }
    s->c0 = _mm256_loadu_si256((const __m256i *)lo);
    s->c1 = _mm256_loadu_si256((const __m256i *)hi);
    s->c2 = _mm256_set1_epi32((int)(uint32_t)stream);
    s->c3 = _mm256_set1_epi32((int)(uint32_t)(stream >> 32));
}

/* One Philox round with round keys key0, key1. */
static inline void philox_x8_round(philox_x8 *s, uint32_t key0, uint32_t key1)
{
    const __m256i k0 = _mm256_set1_epi32((int)key0), k1 = _mm256_set1_epi32((int)key1);
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    __m256i hi0, lo0, hi1, lo1;
    mulhilo_x8(s->c0, m0, &hi0, &lo0);
    mulhilo_x8(s->c2, m1, &hi1, &lo1);
    s->c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, s->c1), k0);
    s->c1 = lo1;
    s->c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, s->c3), k1);
    s->c3 = lo0;
}

/* The 64 draws in element order: block l's four words, little-endian, are draws 8 l .. 8 l + 7
 * (a 4 x 8 word transpose in registers). */
static inline void philox_x8_store(const philox_x8 *s, uint16_t r[64])
{
    __m256i t0 = _mm256_unpacklo_epi32(s->c0, s->c1), t1 = _mm256_unpackhi_epi32(s->c0, s->c1);
    __m256i t2 = _mm256_unpacklo_epi32(s->c2, s->c3), t3 = _mm256_unpackhi_epi32(s->c2, s->c3);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2); /* blocks 0 | 4 */
    __m256i u1 = _mm256_unpackhi_epi64(t0, t2); /* blocks 1 | 5 */
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3); /* blocks 2 | 6 */
    __m256i u3 = _mm256_unpackhi_epi64(t1, t3); /* blocks 3 | 7 */
    _mm256_storeu_si256((__m256i *)(r + 0), _mm256_permute2x128_si256(u0, u1, 0x20));
    _mm256_storeu_si256((__m256i *)(r + 16), _mm256_permute2x128_si256(u2, u3, 0x20));
    _mm256_storeu_si256((__m256i *)(r + 32), _mm256_permute2x128_si256(u0, u1, 0x31));
    _mm256_storeu_si256((__m256i *)(r + 48), _mm256_permute2x128_si256(u2, u3, 0x31));
}

#if defined(__AVX512F__)
/* With AVX-512 a round costs 6 instructions per 8 blocks instead of 18: each 64-bit lane of a
 * zmm holds one block's word in its low half (the high half is ignored by vpmuludq, so the low
 * product needs no extraction), the high product reaches the low half by a dword swap, and
 * hi ^ word ^ key is one vpternlogd. */
typedef struct philox_z8 {
    __m512i c0, c1, c2, c3; /* word w of block l: low half of lane l of c[w] */
} philox_z8;

static inline void philox_z8_init(philox_z8 *s, uint64_t stream, uint64_t ctr0)
{
    __m512i ctr = _mm512_add_epi64(_mm512_set1_epi64((long long)ctr0),
                                   _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    s->c0 = ctr;
    s->c1 = _mm512_srli_epi64(ctr, 32);
    s->c2 = _mm512_set1_epi64((long long)(uint32_t)stream);
    s->c3 = _mm512_set1_epi64((long long)(stream >> 32));
}

static inline void philox_z8_round(philox_z8 *s, uint32_t key0, uint32_t key1)
{
    const __m512i k0 = _mm512_set1_epi32((int)key0), k1 = _mm512_set1_epi32((int)key1);
    const __m512i m0 = _mm512_set1_epi64(PHILOX_M0), m1 = _mm512_set1_epi64(PHILOX_M1);
    __m512i p0 = _mm512_mul_epu32(s->c0, m0), p1 = _mm512_mul_epu32(s->c2, m1);
    /* 0x96: a ^ b ^ c; 0xB1 swaps the dwords of each qword (high product to the low half) */
    s->c0 = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p1, 0xB1), s->c1, k0, 0x96);
    s->c2 = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p0, 0xB1), s->c3, k1, 0x96);
    s->c1 = p1;
    s->c3 = p0;
}

/* Blocks 0..7 in element order: block l's words 0..3 (low halves) are draws 8 l .. 8 l + 7. */
static inline void philox_z8_store(const philox_z8 *s, uint16_t r[64])
{
    __m512i w01 = _mm512_mask_blend_epi32(0xAAAA, s->c0, _mm512_slli_epi64(s->c1, 32));
    __m512i w23 = _mm512_mask_blend_epi32(0xAAAA, s->c2, _mm512_slli_epi64(s->c3, 32));
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_storeu_si512((void *)r, _mm512_permutex2var_epi64(w01, lo, w23));
    _mm512_storeu_si512((void *)(r + 32), _mm512_permutex2var_epi64(w01, hi, w23));
}
#endif

/* A group of 8 blocks in flight: zmm lanes with AVX-512, else ymm words. */
#if defined(__AVX512F__)
typedef philox_z8 philox_group;
#define philox_group_init philox_z8_init
#define philox_group_round philox_z8_round
#define philox_group_store philox_z8_store
#else
typedef philox_x8 philox_group;
#define philox_group_init philox_x8_init
#define philox_group_round philox_x8_round
#define philox_group_store philox_x8_store
#endif

/* The draws of blocks ctr0 .. ctr0 + 8 G - 1 for G = 4 groups of 8: independent groups in
 * flight hide the multiplier latency of each group's round chain. r gets 256 draws. */
static void philox_draws256(uint64_t seed, uint64_t stream, uint64_t ctr0, uint16_t r[256])
{
    enum { G = 4 };
    philox_group s[G];
    for (int g = 0; g < G; g++) {
        philox_group_init(&s[g], stream, ctr0 + 8 * (uint64_t)g);
    }
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        for (int g = 0; g < G; g++) {
            philox_group_round(&s[g], k0, k1);
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    for (int g = 0; g < G; g++) {
        philox_group_store(&s[g], r + 64 * g);
    }
}

static void philox_draws64(uint64_t seed, uint64_t stream, uint64_t ctr0, uint16_t r[64])
{
    philox_x8 s;
    philox_x8_init(&s, stream, ctr0);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        philox_x8_round(&s, k0, k1);
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    philox_x8_store(&s, r);
}
#else
/* The 64 draws of blocks ctr0 .. ctr0+7 in element order (one block at a time). */
static void philox_draws64(uint64_t seed, uint64_t stream, uint64_t ctr0, uint16_t r[64])
{
    for (int l = 0; l < 8; l++) {
        uint32_t w[4];
        loco_rng_block(seed, stream, ctr0 + (uint64_t)l, w);
        for (int j = 0; j < 8; j++) {
            r[8 * l + j] = (uint16_t)(w[j / 2] >> (16 * (j % 2)));
        }
    }
}

static void philox_draws256(uint64_t seed, uint64_t stream, uint64_t ctr0, uint16_t r[256])
{
    for (int g = 0; g < 4; g++) {
        philox_draws64(seed, stream, ctr0 + 8 * (uint64_t)g, r + 64 * g);
    }
}
#endif

/* ---- ARS-7 --------------------------------------------------------------------------------- */

/* Blocks b0 + from .. b0 + nb - 1 of (seed, stream) in portable C, one loco_rng_ars_block each:
 * block b's 128-bit output, little-endian, is draws 8 b .. 8 b + 7 (r[8 b ..]). */
static void ars_blocks_portable(uint64_t seed, uint64_t stream, uint64_t b0, size_t from,
                                size_t nb, uint16_t *r)
{
    for (size_t b = from; b < nb; b++) {
        uint32_t w[4];
        loco_rng_ars_block(seed, stream, b0 + b, w);
        for (int j = 0; j < 8; j++) {
            r[8 * b + (size_t)j] = (uint16_t)(w[j / 2] >> (16 * (j % 2)));
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define LOCO_ARS_X86 1
enum { ARS_R = LOCO_ARS_ROUNDS };

/* Round r's key: {seed, 0} + r * Weyl, in two 64-bit lanes. */
static void ars_keys(uint64_t seed, __m128i key[ARS_R + 1])
{
    const __m128i weyl = _mm_set_epi64x((long long)0xBB67AE8584CAA73Bull,
                                        (long long)0x9E3779B97F4A7C15ull);
    key[0] = _mm_set_epi64x(0, (long long)seed);
    for (int k = 1; k <= ARS_R; k++) {
        key[k] = _mm_add_epi64(key[k - 1], weyl);
    }
}

/* Blocks b0 + from .. b0 + nb - 1 with AES-NI: 8 in flight (the unit's latency times its
 * throughput), then one at a time. Compiled for AES-NI whatever the build targets; called only
 * where the CPU has it. */
__attribute__((target("aes"))) static void ars_blocks_xmm(const __m128i *key, uint64_t stream,
                                                          uint64_t b0, size_t from, size_t nb,
                                                          uint16_t *r)
{
    size_t b = from;
    for (; b + 8 <= nb; b += 8) {
        __m128i v[8];
        for (int j = 0; j < 8; j++) {
            v[j] = _mm_xor_si128(_mm_set_epi64x((long long)stream, (long long)(b0 + b + j)),
                                 key[0]);
        }
        for (int k = 1; k < ARS_R; k++) {
            for (int j = 0; j < 8; j++) {
                v[j] = _mm_aesenc_si128(v[j], key[k]);
            }
        }
        for (int j = 0; j < 8; j++) {
            _mm_storeu_si128((__m128i *)(r + 8 * (b + (size_t)j)),
                             _mm_aesenclast_si128(v[j], key[ARS_R]));
        }
    }
    for (; b < nb; b++) {
        __m128i v = _mm_xor_si128(_mm_set_epi64x((long long)stream, (long long)(b0 + b)), key[0]);
        for (int k = 1; k < ARS_R; k++) {
            v = _mm_aesenc_si128(v, key[k]);
        }
        _mm_storeu_si128((__m128i *)(r + 8 * b), _mm_aesenclast_si128(v, key[ARS_R]));
    }
}
#else
#define LOCO_ARS_X86 0
#endif

/* Blocks b0 .. b0 + nb - 1 of (seed, stream) into r (8 nb draws in element order): the widest
 * AES path the build targets (VAES on zmm or ymm), the rest with AES-NI where this CPU has it
 * (a check at run time when the build does not target it), else portable C. */
static void ars_blocks(uint64_t seed, uint64_t stream, uint64_t b0, size_t nb, uint16_t *r)
{
    size_t b = 0;
#if LOCO_ARS_X86
    __m128i key[ARS_R + 1];
    ars_keys(seed, key);
#if defined(__VAES__) && defined(__AVX512F__)
    /* 4 zmm of 4 blocks: 16 blocks in flight hide the AES unit's latency */
    __m512i kz[ARS_R + 1];
    for (int k = 0; k <= ARS_R; k++) {
        kz[k] = _mm512_broadcast_i32x4(key[k]);
    }
    const __m512i four = _mm512_setr_epi64(4, 0, 4, 0, 4, 0, 4, 0);
    __m512i ctr = _mm512_setr_epi64((long long)b0, (long long)stream, (long long)b0 + 1,
                                    (long long)stream, (long long)b0 + 2, (long long)stream,
                                    (long long)b0 + 3, (long long)stream);
    for (; b + 16 <= nb; b += 16) {
        __m512i v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = _mm512_xor_si512(ctr, kz[0]);
            ctr = _mm512_add_epi64(ctr, four);
        }
        for (int k = 1; k < ARS_R; k++) {
            for (int j = 0; j < 4; j++) {
                v[j] = _mm512_aesenc_epi128(v[j], kz[k]);
            }
        }
        for (int j = 0; j < 4; j++) {
            _mm512_storeu_si512((void *)(r + 8 * (b + 4 * (size_t)j)),
                                _mm512_aesenclast_epi128(v[j], kz[ARS_R]));
        }
    }
#elif defined(__VAES__) && defined(__AVX2__)
    /* 4 ymm of 2 blocks */
    __m256i ky[ARS_R + 1];
    for (int k = 0; k <= ARS_R; k++) {
        ky[k] = _mm256_broadcastsi128_si256(key[k]);
    }
    const __m256i two = _mm256_setr_epi64x(2, 0, 2, 0);
    __m256i ctr = _mm256_setr_epi64x((long long)b0, (long long)stream, (long long)b0 + 1,
                                     (long long)stream);
    for (; b + 8 <= nb; b += 8) {
        __m256i v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_xor_si256(ctr, ky[0]);
            ctr = _mm256_add_epi64(ctr, two);
        }
        for (int k = 1; k < ARS_R; k++) {
            for (int j = 0; j < 4; j++) {
                v[j] = _mm256_aesenc_epi128(v[j], ky[k]);
            }
        }
        for (int j = 0; j < 4; j++) {
            _mm256_storeu_si256((__m256i *)(r + 8 * (b + 2 * (size_t)j)),
                                _mm256_aesenclast_epi128(v[j], ky[ARS_R]));
        }
    }
#endif
#if defined(__AES__)
    const bool aes_ni = true;
#else
    const bool aes_ni = __builtin_cpu_supports("aes");
#endif
    if (aes_ni) {
        ars_blocks_xmm(key, stream, b0, b, nb, r);
        return;
    }
#endif
    ars_blocks_portable(seed, stream, b0, b, nb, r);
}

/* The ARS draws of elements first .. first + len - 1: partial blocks at either end through a
 * block's worth of scratch. */
static void ars_draws16(uint64_t seed, uint64_t stream, size_t first, size_t len, uint16_t *r)
{
    size_t i = first, end = first + len;
    while (i < end) {
        size_t block = i / 8;
        if (i % 8 == 0 && end - i >= 8) {
            size_t nb = (end - i) / 8;
            ars_blocks(seed, stream, (uint64_t)block, nb, r + (i - first));
            i += 8 * nb;
            continue;
        }
        uint16_t tmp[8];
        ars_blocks(seed, stream, (uint64_t)block, 1, tmp);
        size_t stop = end < 8 * block + 8 ? end : 8 * block + 8;
        memcpy(r + (i - first), tmp + (i - 8 * block), (stop - i) * sizeof *r);
        i = stop;
    }
}

void loco_codec_draws16(loco_codec_rng rng, uint64_t seed, uint64_t stream, size_t first,
                        size_t len, uint16_t *r)
{
    if (LOCO_CODEC_RNG_ARS == rng) {
        ars_draws16(seed, stream, first, len, r);
        return;
    }
    /* Element i uses block i / 8, word (i % 8) / 2, half i % 2: 8 blocks cover 64 elements. */
    size_t i = first, end = first + len;
    while (i < end) {
        size_t group = i / 64 * 64;
        if (i == group && end - i >= 256) {
            philox_draws256(seed, stream, (uint64_t)(group / 8), r + (i - first));
            i += 256;
            continue;
        }
        if (i == group && end - i >= 64) {
            philox_draws64(seed, stream, (uint64_t)(group / 8), r + (i - first));
            i += 64;
            continue;
        }
        uint16_t tmp[64];
        philox_draws64(seed, stream, (uint64_t)(group / 8), tmp);
        size_t stop = end < group + 64 ? end : group + 64;
        memcpy(r + (i - first), tmp + (i - group), (stop - i) * sizeof *r);
        i = stop;
    }
}

bool loco_all_finite(const float *x, size_t n)
{
    /* An exponent field of all ones is NaN or Inf. Written with AVX2 where the compiler targets
     * it: GCC 13 leaves the plain loop's OR reduction scalar (10x slower on a Sapphire Rapids
     * core, where top-k, random-k, DGC, DCT top-k and PowerSGD run it over their whole input). */
    size_t i = 0;
#if defined(__AVX2__)
    const __m256i exponent = _mm256_set1_epi32(0x7F800000);
    __m256i bad0 = _mm256_setzero_si256(), bad1 = bad0;
    for (; i + 16 <= n; i += 16) {
        __m256i v0 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), exponent);
        __m256i v1 = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), exponent);
        bad0 = _mm256_or_si256(bad0, _mm256_cmpeq_epi32(v0, exponent));
        bad1 = _mm256_or_si256(bad1, _mm256_cmpeq_epi32(v1, exponent));
    }
    __m256i bad = _mm256_or_si256(bad0, bad1);
    if (!_mm256_testz_si256(bad, bad)) {
        return false;
    }
#endif
    uint32_t any = 0;
#pragma omp simd reduction(| : any)
    for (size_t j = i; j < n; j++) {
        uint32_t u;
        memcpy(&u, &x[j], 4);
        any |= (uint32_t)((u & 0x7F800000u) == 0x7F800000u);
    }
    return 0 == any;
}
