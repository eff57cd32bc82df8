/* cuda/codec.cu — compress/'s bucketed quantizers on the GPU (see cuda.h): max-min, QSGD, FP4,
 * ternary and sign, one warp per bucket in one pass over the input: the bucket's statistics, its
 * scales, every element's code (with the same Philox draws) and the packed run, written where
 * compress/quant_common.c's layout puts them. The arithmetic is the CPU's, operation for
 * operation, with a multiply and an add fused exactly where the CPU build (gcc, FMA) fuses them
 * (the double sums of squares, the nearest-rounding level, TernGrad's variance) and kept apart
 * everywhere else (__fmul_rn / __fadd_rn are never contracted): the bytes must be identical.
 *
 * Statistics follow the CPU's fixed order: min, max and max |x| are exact in any order; the
 * double sums run in 8 interleaved lanes (lane l adds elements l, l + 8, ... in order), lanes
 * added 0..7 — lanes 8k .. 8k + 7 of a block's first warp do exactly that for the block's bucket
 * k (sum_chains), after every warp's first pass has brought the buckets into the cache (two
 * warps forming ternary's two sums at once was slower: 0.69 of a copy against 0.76).
 * Draws: the warp computes each Philox block of its bucket once (lane-parallel) into shared
 * memory before the codes, so a group of 5 trits never recomputes a block.
 */
#include "cuda/cuda_impl.h"

#include <float.h>
#include <math.h>

#define QWARPS 4 /* buckets (warps) per block */
/* at least 8 blocks (32 warps) per SM: 64 registers a thread (H100: QSGD 0.85 -> 0.90 of a
 * copy, FP4 0.99 -> 1.02, sign 1.34 -> 1.41, ternary unchanged) */
#define QBLOCKS_PER_SM 8

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Philox4x32-10 of base/rng.c: counter {ctr lo, ctr hi, stream lo, stream hi}, key {seed}. */
__device__ __forceinline__ void philox_block(uint64_t seed, uint64_t stream, uint64_t ctr,
                                             uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = (uint32_t)stream,
             c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma unroll
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint32_t hi0 = __umulhi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        uint32_t hi1 = __umulhi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Everything a bucket's warp needs. */
struct qconst {
    int kind, bits, sf;
    bool stochastic, sums, absmax;
    float clip_sigma;
    uint64_t seed, stream;
    size_t n, bucket, nbuckets, codes_off, full_code_bytes;
    size_t draws_per_warp; /* shared-memory draws per warp: the bucket rounded up to 8 */
};

static size_t run_bytes(int bits, size_t len)
{
    return bits > 0 ? (len * (size_t)bits + 7) / 8 : (len + 4) / 5;
}

static int scale_floats(loco_cuda_quant_kind kind)
{
    return LOCO_CUDA_QUANT_MAXMIN == kind ? 2 : 1;
}

/* 1 / scale, or a flag to divide when the reciprocal overflows (compress's loco_qinverse). */
__device__ __forceinline__ float qinverse(float scale, bool *divide)
{
    float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    *divide = scale > 0.0f && !(inv <= 3.0e38f);
    return inv;
}

/* The careful path for extreme scales (quant.c's scale_values_double): factor * (v - offset) /
 * scale in double, rounded once to fp32. */
__device__ __forceinline__ float scale_double(float v, float offset, float scale, double factor)
{
    double k = scale > 0.0f ? __ddiv_rn(factor, (double)scale) : 0.0;
    return (float)__dmul_rn(__dsub_rn((double)v, (double)offset), k);
}

/* A level in [0, top] of t >= 0: stochastic with draw r, or nearest. */
__device__ __forceinline__ int round_level(float t, bool stochastic, uint16_t r, int top)
{
    int c;
    if (stochastic) {
        c = (int)t;
        c += (int)((float)r < __fmul_rn(t - (float)c, 65536.0f));
    } else {
        c = (int)__fadd_rn(t, 0.5f); /* unfused, as on the CPU */
    }
    return c < top ? c : top;
}

/* What every element of a bucket needs, derived once from its scales (the CPU derives the same
 * values once per tile): the reciprocal or levels-per-unit multiplier, and whether the careful
 * double path is needed. */
struct qbucket {
    float sc[2];
    float mul;    /* max-min, FP4, ternary: 1 / scale; QSGD: s / norm */
    bool careful; /* max-min, QSGD, FP4: the double path; ternary: divide by the scale */
    int top;      /* max-min: 2^b - 1; QSGD: s = 2^(b-1) - 1 */
};

template <int KIND>
__device__ __forceinline__ qbucket quant_bucket(const qconst &q, const float *sc)
{
    qbucket b;
    b.sc[0] = sc[0];
    b.sc[1] = sc[1];
    b.mul = 0.0f;
    b.careful = false;
    b.top = 0;
    bool divide = false;
    switch (KIND) {
    case LOCO_CUDA_QUANT_MAXMIN:
        b.top = (int)((1u << q.bits) - 1u);
        b.mul = qinverse(sc[1], &divide);
        /* fp32 fast path unless the unit is subnormal or x - min could overflow (quant.c) */
        b.careful = divide || !((double)sc[1] * b.top < 1e38);
        break;
    case LOCO_CUDA_QUANT_QSGD:
        b.top = (int)((1u << (q.bits - 1)) - 1u);
        b.mul = sc[0] > 0.0f ? __fdiv_rn((float)b.top, sc[0]) : 0.0f; /* levels per unit */
        b.careful = !(b.mul <= 3e38f); /* a tiny norm: s / norm overflows fp32 */
        break;
    case LOCO_CUDA_QUANT_FP4:
    case LOCO_CUDA_QUANT_TERNARY:
        b.mul = qinverse(sc[0], &divide);
        b.careful = divide;
        break;
    default: break;
    }
    return b;
}

/* The code of element x (draw r) under the bucket's scales, as compress/quant.c, ternary.c,
 * sign.c compute it. */
template <int KIND>
__device__ __forceinline__ uint8_t quant_code(const qconst &q, const qbucket &b, float x,
                                              uint16_t r)
{
    uint32_t u = __float_as_uint(x);
    const float *sc = b.sc;
    switch (KIND) {
    case LOCO_CUDA_QUANT_MAXMIN: {
        int top = b.top;
        if (b.careful) {
            return (uint8_t)round_level(scale_double(x, sc[0], sc[1], 1.0), q.stochastic, r, top);
        }
        if (q.stochastic) {
            return (uint8_t)round_level(__fmul_rn(x - sc[0], b.mul), true, r, top);
        }
        int c = (int)__fadd_rn(__fmul_rn(x - sc[0], b.mul), 0.5f); /* unfused, as the CPU */
        return (uint8_t)(c < top ? c : top);
    }
    case LOCO_CUDA_QUANT_QSGD: {
        int s = b.top;
        float ax = fabsf(x);
        int level;
        if (b.careful) {
            level = round_level(scale_double(ax, 0.0f, sc[0], (double)s), q.stochastic, r, s);
        } else if (q.stochastic) {
            level = round_level(__fmul_rn(ax - 0.0f, b.mul), true, r, s);
        } else {
            int c = (int)__fadd_rn(__fmul_rn(ax - 0.0f, b.mul), 0.5f); /* unfused, as the CPU */
            level = c < s ? c : s;
        }
        return (uint8_t)((u >> 31) ? s - level : s + level);
    }
    case LOCO_CUDA_QUANT_FP4: {
        float t = b.careful ? scale_double(fabsf(x), 0.0f, sc[0], 1.0)
                            : __fmul_rn(fabsf(x), b.mul);
        uint32_t ab = __float_as_uint(t);
        ab = ab < 0x3F800000u ? ab : 0x3F800000u;
        int ea = (int)(ab >> 23) - 127;
        int big = ea >= -6;
        float a = __uint_as_float(ab);
        float frac = big ? __fmul_rn((float)(int)(ab & 0x7FFFFFu), 1.0f / 8388608.0f)
                         : __fmul_rn(a, 64.0f);
        int up = q.stochastic ? (float)r < __fmul_rn(frac, 65536.0f) : frac >= 0.5f;
        int e = (big ? ea + 7 : 0) + up;
        int neg = (int)(u >> 31) << 3;
        return (uint8_t)(0 == e ? 0 : (neg | e));
    }
    case LOCO_CUDA_QUANT_TERNARY: {
        float t = b.careful ? fabsf(x) / sc[0] : __fmul_rn(fabsf(x), b.mul);
        int keep = q.stochastic ? (float)r < __fmul_rn(t, 65536.0f) : __fmul_rn(t, 2.0f) >= 1.0f;
        return (uint8_t)(keep ? 1 + (u >> 31) : 0);
    }
    default: /* sign: 1 for x < 0 (not -0.0) */
        return (uint8_t)((u >> 31) & (uint32_t)(0 != (u & 0x7FFFFFFFu)));
    }
}

/* Scales of one bucket from its statistics (compress's *_scales); returns 0, or 1 when a scale
 * is not representable (LOCO_ERR_RANGE on the CPU). */
__device__ int quant_scales(const qconst &q, float mn, float mx, uint32_t am, double sum,
                            double sumsq, double sumabs, int len, float *sc)
{
    switch (q.kind) {
    case LOCO_CUDA_QUANT_MAXMIN: {
        double levels = (double)((1u << q.bits) - 1u);
        double unit = ((double)mx - (double)mn) / levels;
        if (!(unit <= FLT_MAX)) {
            return 1;
        }
        sc[0] = 0.0f == mn ? 0.0f : mn; /* a zero minimum and unit are +0, as on the CPU */
        sc[1] = 0.0 == unit ? 0.0f : (float)unit;
        /* round the unit up if fp32 rounding (subnormal units) left the grid short of the max */
        if (__dmul_rn((double)sc[1], levels) < __dsub_rn((double)mx, (double)mn)) {
            sc[1] = nextafterf(sc[1], INFINITY);
        }
        if (!isfinite(sc[0]) || !isfinite(sc[1])) {
            return 1;
        }
        double top = (double)sc[0] + (double)sc[1] * levels;
        return sc[1] < 0.0f || !(fabs(top) <= FLT_MAX) ? 1 : 0;
    }
    case LOCO_CUDA_QUANT_QSGD: {
        double norm = sqrt(sumsq);
        if (!(norm <= FLT_MAX)) {
            return 1;
        }
        sc[0] = (float)norm;
        return 0;
    }
    case LOCO_CUDA_QUANT_FP4:
        sc[0] = __uint_as_float(am);
        return 0;
    case LOCO_CUDA_QUANT_TERNARY: {
        float absmax = __uint_as_float(am), s = absmax;
        if (q.clip_sigma > 0.0f && len > 0) {
            double mean = sum / (double)len;
            double var = __dsub_rn(sumsq / (double)len, __dmul_rn(mean, mean)); /* as the CPU */
            double clip = (double)q.clip_sigma * sqrt(var > 0.0 ? var : 0.0);
            if (clip < (double)absmax) {
                s = (float)clip;
            }
        }
        sc[0] = s;
        return 0;
    }
    default:
        sc[0] = len > 0 ? (float)(sumabs / (double)len) : 0.0f;
        return 0;
    }
}

/* Chain l (0..7) of bucket j's double sums, as compress/quant_common.c's qstats_tile: lane l
 * adds elements l, l + 8, ... in order; then the 8 lanes of this group of the warp (lanes
 * 8k .. 8k + 7) are added 0..7 and lane 8k writes {sum, sumsq, sumabs} to out. Only the sums
 * the family's scales use are formed (as the CPU), the others stay 0; a NaN or Inf input makes
 * a formed sum non-finite. A bucket past the end gives zeros. */
template <int KIND>
__device__ void sum_chains(const qconst &q, const float *in, size_t j, int l, double *out)
{
    const bool plain = LOCO_CUDA_QUANT_TERNARY == KIND; /* the clip's mean */
    const bool squares = LOCO_CUDA_QUANT_QSGD == KIND || LOCO_CUDA_QUANT_TERNARY == KIND;
    const bool absolute = LOCO_CUDA_QUANT_SIGN == KIND;
    double s = 0.0, sq = 0.0, sa = 0.0;
    if (j < q.nbuckets) {
        size_t start = j * q.bucket;
        int len = (int)(q.n - start < q.bucket ? q.n - start : q.bucket);
        const float *x = in + start;
        for (int i = l; i < len; i += 8) {
            double v = (double)x[i];
            if (plain) {
                s += v;
            }
            if (squares) {
                sq = __dadd_rn(sq, __dmul_rn(v, v)); /* unfused, as the CPU */
            }
            if (absolute) {
                sa += fabs(v);
            }
        }
    }
    int base = (int)(threadIdx.x % 32) & ~7;
    double sum = 0.0, sumsq = 0.0, sumabs = 0.0;
    for (int k = 0; k < 8; k++) { /* lanes added 0..7, as on the CPU */
        sum += __shfl_sync(0xffffffffu, s, base + k);
        sumsq += __shfl_sync(0xffffffffu, sq, base + k);
        sumabs += __shfl_sync(0xffffffffu, sa, base + k);
    }
    if (0 == l) {
        out[0] = sum;
        out[1] = sumsq;
        out[2] = sumabs;
    }
}

/* b-bit codes of a bucket (len elements at x, draws in shared memory), a group of 8 codes
 * (b bytes) per lane at a time, written to the bucket's run. */
template <int KIND>
__device__ __forceinline__ void bbit_codes(const qconst &q, const qbucket &b, const float *x,
                                           const uint16_t *draws, int len, int lane,
                                           bool draws_aligned, uint8_t *run)
{
    int groups = (len + 7) / 8;
    for (int g = lane; g < groups; g += 32) {
        int e0 = g * 8;
        int cnt = len - e0 < 8 ? len - e0 : 8;
        uint16_t r[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (q.stochastic) {
            if (8 == cnt && draws_aligned) { /* one 16-byte load */
                uint4 d = reinterpret_cast<const uint4 *>(draws)[g];
                uint32_t dw[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    r[k] = (uint16_t)(dw[k / 2] >> (16 * (k % 2)));
                }
            } else {
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    r[k] = k < cnt ? draws[e0 + k] : 0;
                }
            }
        }
        float v[8];
        const float *xg = x + e0;
        if (8 == cnt && 0 == ((uintptr_t)xg & 15)) { /* two 16-byte loads */
            float4 a = reinterpret_cast<const float4 *>(xg)[0];
            float4 c = reinterpret_cast<const float4 *>(xg)[1];
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
            v[4] = c.x, v[5] = c.y, v[6] = c.z, v[7] = c.w;
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                v[k] = k < cnt ? xg[k] : 0.0f;
            }
        }
        uint64_t packed = 0;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            if (k < cnt) {
                packed |= (uint64_t)quant_code<KIND>(q, b, v[k], r[k]) << (k * q.bits);
            }
        }
        int bytes = (cnt * q.bits + 7) / 8;
        uint8_t *dst = run + (size_t)g * q.bits;
        if (8 == bytes && 0 == ((uintptr_t)dst & 7)) { /* one store where aligned */
            *reinterpret_cast<uint64_t *>(dst) = packed;
        } else if (4 == bytes && 0 == ((uintptr_t)dst & 3)) {
            *reinterpret_cast<uint32_t *>(dst) = (uint32_t)packed;
        } else if (2 == bytes && 0 == ((uintptr_t)dst & 1)) {
            *reinterpret_cast<uint16_t *>(dst) = (uint16_t)packed;
        } else {
            for (int k = 0; k < bytes; k++) {
                dst[k] = (uint8_t)(packed >> (8 * k));
            }
        }
    }
}

/* Ternary codes of a bucket: 20 elements (4 bytes of 5 trits, t0 + 3 t1 + ... + 81 t4) per
 * lane at a time, so the loads are 16 bytes wide (x 16-byte aligned: 20 floats are 80 bytes)
 * and the draws 8 bytes wide. */
template <int KIND>
__device__ __forceinline__ void ternary_codes(const qconst &q, const qbucket &b, const float *x,
                                              const uint16_t *draws, int len, int lane,
                                              bool x_aligned, uint8_t *run)
{
    int chunks = (len + 19) / 20;
    for (int c = lane; c < chunks; c += 32) {
        int e0 = 20 * c;
        int cnt = len - e0 < 20 ? len - e0 : 20;
        float v[20];
        uint16_t r[20];
        if (20 == cnt && x_aligned) {
            const float4 *x4 = reinterpret_cast<const float4 *>(x + e0);
#pragma unroll
            for (int k = 0; k < 5; k++) {
                float4 f = x4[k];
                v[4 * k] = f.x, v[4 * k + 1] = f.y, v[4 * k + 2] = f.z, v[4 * k + 3] = f.w;
            }
        } else {
#pragma unroll
            for (int k = 0; k < 20; k++) {
                v[k] = k < cnt ? x[e0 + k] : 0.0f;
            }
        }
        if (q.stochastic && 20 == cnt) { /* draws + e0 lies on 8 bytes (40 c from 16) */
            const uint2 *d2 = reinterpret_cast<const uint2 *>(draws + e0);
#pragma unroll
            for (int k = 0; k < 5; k++) {
                uint2 d = d2[k];
                r[4 * k] = (uint16_t)d.x, r[4 * k + 1] = (uint16_t)(d.x >> 16);
                r[4 * k + 2] = (uint16_t)d.y, r[4 * k + 3] = (uint16_t)(d.y >> 16);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 20; k++) {
                r[k] = q.stochastic && k < cnt ? draws[e0 + k] : 0;
            }
        }
        uint32_t word = 0;
#pragma unroll
        for (int g = 0; g < 4; g++) {
            uint32_t trits = 0, mul = 1;
#pragma unroll
            for (int k = 0; k < 5; k++) {
                int i = 5 * g + k;
                if (i < cnt) {
                    trits += quant_code<KIND>(q, b, v[i], r[i]) * mul;
                    mul *= 3;
                }
            }
            word |= trits << (8 * g);
        }
        int bytes = (cnt + 4) / 5;
        uint8_t *dst = run + 4 * (size_t)c;
        if (4 == bytes && 0 == ((uintptr_t)dst & 3)) {
            *reinterpret_cast<uint32_t *>(dst) = word;
        } else {
            for (int k = 0; k < bytes; k++) {
                dst[k] = (uint8_t)(word >> (8 * k));
            }
        }
    }
}

/* One kernel per family (KIND): the element loop carries no switch. */
template <int KIND>
__global__ void __launch_bounds__(32 * QWARPS, QBLOCKS_PER_SM)
    quant_kernel(qconst q, const float *in, uint8_t *payload, int *status)
{
    int lane = threadIdx.x % 32;
    size_t j = (size_t)blockIdx.x * QWARPS + threadIdx.x / 32;
    bool live = j < q.nbuckets; /* a block's last warps may have no bucket */
    size_t start = live ? j * q.bucket : 0;
    int len = live ? (int)(q.n - start < q.bucket ? q.n - start : q.bucket) : 0;
    const float *x = in + start;

    /* statistics (min, max and max |x| are exact in any order: 16-byte loads where aligned);
     * this first pass also brings the bucket into the cache for the sums and the codes */
    const bool minmax = LOCO_CUDA_QUANT_MAXMIN == KIND; /* the others' scales need no min/max */
    float mn = FLT_MAX, mx = -FLT_MAX;
    uint32_t am = 0;
    int vec = 0 == ((uintptr_t)x & 15) ? len / 4 : 0;
#pragma unroll 4
    for (int i = lane; i < vec; i += 32) {
        float4 f = reinterpret_cast<const float4 *>(x)[i];
        float v4[4] = {f.x, f.y, f.z, f.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t b = __float_as_uint(v4[k]) & 0x7FFFFFFFu;
            am = b > am ? b : am;
            if (minmax) {
                mn = v4[k] < mn ? v4[k] : mn;
                mx = v4[k] > mx ? v4[k] : mx;
            }
        }
    }
    for (int i = 4 * vec + lane; i < len; i += 32) {
        float v = x[i];
        uint32_t b = __float_as_uint(v) & 0x7FFFFFFFu;
        am = b > am ? b : am;
        if (minmax) {
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        uint32_t oam = __shfl_xor_sync(0xffffffffu, am, o);
        am = oam > am ? oam : am;
        if (minmax) {
            float omn = __shfl_xor_sync(0xffffffffu, mn, o);
            float omx = __shfl_xor_sync(0xffffffffu, mx, o);
            mn = omn < mn ? omn : mn;
            mx = omx > mx ? omx : mx;
        }
    }

    /* the bucket's draws, each Philox block once, into this warp's shared memory: draw e of
     * the bucket is element start + e's (codec.h's layout) */
    extern __shared__ uint4 draw_smem[];
    uint16_t *draws = reinterpret_cast<uint16_t *>(draw_smem) +
                      (size_t)(threadIdx.x / 32) * q.draws_per_warp;
    if (q.stochastic && live) {
        uint64_t first = start / 8, last = (start + (uint64_t)len - 1) / 8;
        bool aligned = 0 == start % 8;
        for (uint64_t blk = first + (uint64_t)lane; blk <= last; blk += 32) {
            uint32_t w[4];
            philox_block(q.seed, q.stream, blk, w);
            uint64_t e0 = 8 * blk - (aligned ? start : 0);
            if (aligned && 8 * blk + 8 <= start + (uint64_t)len) { /* one 16-byte store */
                reinterpret_cast<uint4 *>(draws)[e0 / 8] = make_uint4(w[0], w[1], w[2], w[3]);
                continue;
            }
            for (int t = 0; t < 8; t++) {
                uint64_t gi = 8 * blk + (uint64_t)t;
                if (gi >= start && gi < start + (uint64_t)len) {
                    draws[gi - start] = (uint16_t)(w[t / 2] >> (16 * (t % 2)));
                }
            }
        }
        __syncwarp();
    }

    /* The double sums, for the block's QWARPS buckets at once by warp 0 (after every warp's
     * first pass, so they read the cache): lanes 8k .. 8k + 7 run bucket k's 8 fixed-order
     * chains, so every lane of the warp works (a chain per lane for one bucket would leave 24
     * of 32 idle while the double pipe issues for all 32). */
    __shared__ double block_sums[QWARPS][3];
    if (q.sums) {
        __syncthreads();
        if (threadIdx.x < 32) {
            sum_chains<KIND>(q, in, (size_t)blockIdx.x * QWARPS + (size_t)(lane / 8), lane % 8,
                             block_sums[lane / 8]);
        }
        __syncthreads(); /* before any warp may return */
    }
    if (!live) {
        return;
    }
    const double *my_sums = block_sums[threadIdx.x / 32];
    double sum = my_sums[0], sumsq = my_sums[1], sumabs = my_sums[2];
    if (!q.sums) {
        sum = sumsq = sumabs = 0.0;
    }
    bool bad = (q.absmax && am >= 0x7F800000u) ||
               (q.sums && !(isfinite(sum) && isfinite(sumsq) && isfinite(sumabs)));
    if (bad) {
        if (0 == lane) {
            atomicMax(status, 2);
        }
        return;
    }
    float sc[2] = {0.0f, 0.0f};
    if (0 != quant_scales(q, mn, mx, am, sum, sumsq, sumabs, len, sc)) {
        if (0 == lane) {
            atomicMax(status, 1);
        }
        return;
    }
    if (0 == lane) {
        float *scales = reinterpret_cast<float *>(payload) + j * q.sf;
        for (int k = 0; k < q.sf; k++) {
            scales[k] = sc[k];
        }
    }
    const qbucket b = quant_bucket<KIND>(q, sc);

    /* codes, packed */
    uint8_t *run = payload + q.codes_off + j * q.full_code_bytes;
    if (LOCO_CUDA_QUANT_TERNARY == KIND) {
        ternary_codes<KIND>(q, b, x, draws, len, lane, 0 == ((uintptr_t)x & 15), run);
    } else {
        bbit_codes<KIND>(q, b, x, draws, len, lane, 0 == start % 8, run);
    }
}

/* The layout of compress/quant_common.c's qlayout for buckets of at most one tile. */
static void quant_layout(const loco_cuda_quant_params *p, size_t n, qconst *q)
{
    memset(q, 0, sizeof *q);
    q->kind = (int)p->kind;
    q->bits = p->bits;
    q->sf = scale_floats(p->kind);
    q->n = n;
    if (0 == n) {
        return;
    }
    q->bucket = 0 == p->bucket || p->bucket > n ? n : p->bucket; /* as compress's qlayout */
    q->nbuckets = (n + q->bucket - 1) / q->bucket;
    q->codes_off = q->nbuckets * (size_t)q->sf * 4;
    q->full_code_bytes = run_bytes(p->bits, q->bucket);
    q->draws_per_warp = (q->bucket + 7) / 8 * 8;
}

extern "C" size_t loco_cuda_quant_payload_bytes(const loco_cuda_quant_params *p, size_t n)
{
    qconst q;
    quant_layout(p, n, &q);
    if (0 == n) {
        return 0;
    }
    size_t tail = n - (q.nbuckets - 1) * q.bucket;
    return q.codes_off + (q.nbuckets - 1) * q.full_code_bytes + run_bytes(p->bits, tail);
}

static loco_status check_params(const loco_cuda_quant_params *p, size_t n, loco_error *err)
{
    static const int lo[5] = {1, 2, 4, 0, 1}, hi[5] = {8, 8, 4, 0, 1};
    if ((int)p->kind < 0 || (int)p->kind > LOCO_CUDA_QUANT_SIGN) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "GPU quantizer kind %d unknown",
                              (int)p->kind);
    }
    if (p->bits < lo[p->kind] || p->bits > hi[p->kind]) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "GPU quantizer: %d bits (allowed %d..%d for this family)", p->bits,
                              lo[p->kind], hi[p->kind]);
    }
    size_t bucket = 0 == p->bucket || p->bucket > n ? n : p->bucket; /* 0: the whole message */
    if (bucket > LOCO_CUDA_QUANT_MAX_BUCKET) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "GPU quantizer: buckets of %zu elements; the GPU path takes buckets "
                              "of 1..%d elements (set codec.bucket, e.g. 512, or encode on the "
                              "CPU)",
                              bucket, LOCO_CUDA_QUANT_MAX_BUCKET);
    }
    return LOCO_OK;
}

extern "C" loco_status loco_cuda_quant_encode(loco_cuda_ctx *ctx, const loco_cuda_quant_params *p,
                                              const float *in, size_t n, uint8_t *payload,
                                              loco_error *err)
{
    LOCO_TRY(check_params(p, n, err));
    if (0 == n) {
        return LOCO_OK;
    }
    qconst q;
    quant_layout(p, n, &q);
    q.stochastic = p->stochastic && LOCO_CUDA_QUANT_SIGN != p->kind;
    q.clip_sigma = p->clip_sigma;
    q.seed = p->seed;
    q.stream = p->stream;
    /* which statistics the family's scales need (compress's LOCO_QSTAT_* per family) */
    q.sums = LOCO_CUDA_QUANT_QSGD == p->kind || LOCO_CUDA_QUANT_TERNARY == p->kind ||
             LOCO_CUDA_QUANT_SIGN == p->kind;
    q.absmax = LOCO_CUDA_QUANT_MAXMIN == p->kind || LOCO_CUDA_QUANT_FP4 == p->kind ||
               LOCO_CUDA_QUANT_TERNARY == p->kind;
    int *status = reinterpret_cast<int *>(ctx->reduce_scratch); /* stream-ordered scratch */
    cudaError_t e = cudaMemsetAsync(status, 0, sizeof(int), ctx->stream);
    if (cudaSuccess == e) {
        unsigned int blocks = ceil_div(q.nbuckets, QWARPS);
        size_t smem = q.stochastic ? QWARPS * q.draws_per_warp * sizeof(uint16_t) : 0;
        switch (p->kind) {
        case LOCO_CUDA_QUANT_MAXMIN:
            quant_kernel<LOCO_CUDA_QUANT_MAXMIN><<<blocks, 32 * QWARPS, smem, ctx->stream>>>(
                q, in, payload, status);
            break;
        case LOCO_CUDA_QUANT_QSGD:
            quant_kernel<LOCO_CUDA_QUANT_QSGD><<<blocks, 32 * QWARPS, smem, ctx->stream>>>(
                q, in, payload, status);
            break;
        case LOCO_CUDA_QUANT_FP4:
            quant_kernel<LOCO_CUDA_QUANT_FP4><<<blocks, 32 * QWARPS, smem, ctx->stream>>>(
                q, in, payload, status);
            break;
        case LOCO_CUDA_QUANT_TERNARY:
            quant_kernel<LOCO_CUDA_QUANT_TERNARY><<<blocks, 32 * QWARPS, smem, ctx->stream>>>(
                q, in, payload, status);
            break;
        default:
            quant_kernel<LOCO_CUDA_QUANT_SIGN><<<blocks, 32 * QWARPS, smem, ctx->stream>>>(
                q, in, payload, status);
            break;
        }
        e = cudaGetLastError();
    }
    int host = 0;
    LOCO_TRY(loco_cuda_finish_status(ctx, e, status, &host, "GPU quantizer", err));
    if (2 == host) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "GPU quantizer: input has NaN or Inf");
    }
    if (1 == host) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "GPU quantizer: a bucket's scale is not representable in fp32 "
                              "(values too large); scale the input down");
    }
    return LOCO_OK;
}
