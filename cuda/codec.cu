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
 * added 0..7 — lanes 0..7 of the warp do exactly that.
 */
#include "cuda/cuda_impl.h"

#include <float.h>
#include <math.h>

#define QWARPS 4 /* buckets (warps) per block */

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

/* The code of element x (draw r) under the bucket's scales, as compress/quant.c, ternary.c,
 * sign.c compute it. */
template <int KIND>
__device__ __forceinline__ uint8_t quant_code(const qconst &q, const float *sc, float x,
                                              uint16_t r)
{
    uint32_t u = __float_as_uint(x);
    bool divide;
    switch (KIND) {
    case LOCO_CUDA_QUANT_MAXMIN: {
        int top = (int)((1u << q.bits) - 1u);
        float inv = qinverse(sc[1], &divide);
        /* fp32 fast path unless the unit is subnormal or x - min could overflow (quant.c) */
        if (divide || !((double)sc[1] * top < 1e38)) {
            return (uint8_t)round_level(scale_double(x, sc[0], sc[1], 1.0), q.stochastic, r, top);
        }
        if (q.stochastic) {
            return (uint8_t)round_level(__fmul_rn(x - sc[0], inv), true, r, top);
        }
        int c = (int)__fadd_rn(__fmul_rn(x - sc[0], inv), 0.5f); /* unfused, as the CPU */
        return (uint8_t)(c < top ? c : top);
    }
    case LOCO_CUDA_QUANT_QSGD: {
        int s = (int)((1u << (q.bits - 1)) - 1u);
        float ax = fabsf(x);
        int level;
        float mul = sc[0] > 0.0f ? __fdiv_rn((float)s, sc[0]) : 0.0f; /* levels per unit */
        if (!(mul <= 3e38f)) { /* a tiny norm: s / norm overflows fp32 */
            level = round_level(scale_double(ax, 0.0f, sc[0], (double)s), q.stochastic, r, s);
        } else if (q.stochastic) {
            level = round_level(__fmul_rn(ax - 0.0f, mul), true, r, s);
        } else {
            int c = (int)__fadd_rn(__fmul_rn(ax - 0.0f, mul), 0.5f); /* unfused, as the CPU */
            level = c < s ? c : s;
        }
        return (uint8_t)((u >> 31) ? s - level : s + level);
    }
    case LOCO_CUDA_QUANT_FP4: {
        float inv = qinverse(sc[0], &divide);
        float t = divide ? scale_double(fabsf(x), 0.0f, sc[0], 1.0) : __fmul_rn(fabsf(x), inv);
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
        float inv = qinverse(sc[0], &divide);
        float t = divide ? fabsf(x) / sc[0] : __fmul_rn(fabsf(x), inv);
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
        sc[0] = mn;
        sc[1] = (float)unit;
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

/* One kernel per family (KIND): the element loop carries no switch. */
template <int KIND>
__global__ void __launch_bounds__(32 * QWARPS)
    quant_kernel(qconst q, const float *in, uint8_t *payload, int *status)
{
    int lane = threadIdx.x % 32;
    size_t j = (size_t)blockIdx.x * QWARPS + threadIdx.x / 32;
    if (j >= q.nbuckets) {
        return;
    }
    size_t start = j * q.bucket;
    int len = (int)(q.n - start < q.bucket ? q.n - start : q.bucket);
    const float *x = in + start;

    /* statistics */
    float mn = FLT_MAX, mx = -FLT_MAX;
    uint32_t am = 0;
    for (int i = lane; i < len; i += 32) {
        float v = x[i];
        uint32_t b = __float_as_uint(v) & 0x7FFFFFFFu;
        am = b > am ? b : am;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float omn = __shfl_xor_sync(0xffffffffu, mn, o), omx = __shfl_xor_sync(0xffffffffu, mx, o);
        uint32_t oam = __shfl_xor_sync(0xffffffffu, am, o);
        mn = omn < mn ? omn : mn;
        mx = omx > mx ? omx : mx;
        am = oam > am ? oam : am;
    }
    double s = 0.0, sq = 0.0, sa = 0.0;
    if (q.sums && lane < 8) {
        for (int i = lane; i < len; i += 8) {
            double v = (double)x[i];
            s += v;
            sq = __dadd_rn(sq, __dmul_rn(v, v)); /* unfused, as the CPU */
            sa += fabs(v);
        }
    }
    double sum = 0.0, sumsq = 0.0, sumabs = 0.0;
    for (int l = 0; l < 8; l++) { /* lanes added 0..7, as on the CPU */
        sum += __shfl_sync(0xffffffffu, s, l);
        sumsq += __shfl_sync(0xffffffffu, sq, l);
        sumabs += __shfl_sync(0xffffffffu, sa, l);
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

    /* codes, packed: b-bit groups of 8 (b bytes each) or ternary groups of 5 (one byte) */
    uint8_t *run = payload + q.codes_off + j * q.full_code_bytes;
    int per = q.bits > 0 ? 8 : 5;
    int groups = (len + per - 1) / per;
    for (int g = lane; g < groups; g += 32) {
        int e0 = g * per;
        int cnt = len - e0 < per ? len - e0 : per;
        uint32_t w0[4] = {0, 0, 0, 0}, w1[4] = {0, 0, 0, 0};
        uint64_t gi0 = start + (uint64_t)e0; /* first element's index in the message */
        if (q.stochastic) {                  /* its draws: at most two Philox blocks */
            philox_block(q.seed, q.stream, gi0 / 8, w0);
            if ((gi0 + cnt - 1) / 8 != gi0 / 8) {
                philox_block(q.seed, q.stream, gi0 / 8 + 1, w1);
            }
        }
        float v[8];
        const float *xg = x + e0;
        if (8 == cnt && 0 == ((uintptr_t)xg & 15)) { /* two 16-byte loads */
            float4 a = reinterpret_cast<const float4 *>(xg)[0];
            float4 b = reinterpret_cast<const float4 *>(xg)[1];
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
            v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) {
                v[k] = k < cnt ? xg[k] : 0.0f;
            }
        }
        uint64_t packed = 0;
        uint32_t trits = 0, mul = 1;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            if (k < cnt) {
                uint64_t gi = gi0 + (uint64_t)k;
                int word = (int)(gi % 8) / 2; /* selects, not an indexed array: registers */
                bool second = gi / 8 != gi0 / 8;
                uint32_t w = second ? (0 == word   ? w1[0]
                                       : 1 == word ? w1[1]
                                       : 2 == word ? w1[2]
                                                   : w1[3])
                                    : (0 == word   ? w0[0]
                                       : 1 == word ? w0[1]
                                       : 2 == word ? w0[2]
                                                   : w0[3]);
                uint16_t r = (uint16_t)(w >> (16 * (gi % 2)));
                uint8_t c = quant_code<KIND>(q, sc, v[k], r);
                if (q.bits > 0) {
                    packed |= (uint64_t)c << (k * q.bits);
                } else {
                    trits += c * mul;
                    mul *= 3;
                }
            }
        }
        if (q.bits > 0) {
            int bytes = (cnt * q.bits + 7) / 8;
            uint8_t *dst = run + (size_t)g * q.bits;
            if (8 == bytes && 0 == ((uintptr_t)dst & 7)) { /* one store where aligned */
                *reinterpret_cast<uint64_t *>(dst) = packed;
            } else if (4 == bytes && 0 == ((uintptr_t)dst & 3)) {
                *reinterpret_cast<uint32_t *>(dst) = (uint32_t)packed;
            } else if (2 == bytes && 0 == ((uintptr_t)dst & 1)) {
                *reinterpret_cast<uint16_t *>(dst) = (uint16_t)packed;
            } else {
                for (int b = 0; b < bytes; b++) {
                    dst[b] = (uint8_t)(packed >> (8 * b));
                }
            }
        } else {
            run[g] = (uint8_t)trits;
        }
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
        switch (p->kind) {
        case LOCO_CUDA_QUANT_MAXMIN:
            quant_kernel<LOCO_CUDA_QUANT_MAXMIN><<<blocks, 32 * QWARPS, 0, ctx->stream>>>(
                q, in, payload, status);
            break;
        case LOCO_CUDA_QUANT_QSGD:
            quant_kernel<LOCO_CUDA_QUANT_QSGD><<<blocks, 32 * QWARPS, 0, ctx->stream>>>(
                q, in, payload, status);
            break;
        case LOCO_CUDA_QUANT_FP4:
            quant_kernel<LOCO_CUDA_QUANT_FP4><<<blocks, 32 * QWARPS, 0, ctx->stream>>>(
                q, in, payload, status);
            break;
        case LOCO_CUDA_QUANT_TERNARY:
            quant_kernel<LOCO_CUDA_QUANT_TERNARY><<<blocks, 32 * QWARPS, 0, ctx->stream>>>(
                q, in, payload, status);
            break;
        default:
            quant_kernel<LOCO_CUDA_QUANT_SIGN><<<blocks, 32 * QWARPS, 0, ctx->stream>>>(
                q, in, payload, status);
            break;
        }
        e = cudaGetLastError();
    }
    int host = 0;
    if (cudaSuccess == e) {
        e = cudaMemcpyAsync(&host, status, sizeof host, cudaMemcpyDeviceToHost, ctx->stream);
    }
    if (cudaSuccess == e) {
        e = cudaStreamSynchronize(ctx->stream);
    }
    if (cudaSuccess != e) {
        return loco_cuda_error(err, loco_cuda_fail(e, "quant_kernel", __FILE__, __LINE__),
                               "GPU quantizer");
    }
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
