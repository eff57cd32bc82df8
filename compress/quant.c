/* compress/quant.c — dense codecs (none, fp16, bf16) and the bucketed b-bit quantizers:
 * max-min (CGX), QSGD (Alistarh et al. 2017) and FP4 E3M0. The bucket framework (layout,
 * statistics, parallel tiles, validate-then-apply) is quant_common.c.
 *
 *   max-min  scales {min, unit = (max - min) / (2^b - 1)}; code c in 0..2^b-1;
 *            value = min + c * unit. Stochastic rounding is unbiased: |error| < unit; nearest:
 *            |error| <= unit / 2.
 *   QSGD     scale {norm = ||bucket||_2}; s = 2^(b-1) - 1 levels; code = s + sign * level with
 *            level in 0..s (codes 0..2s; 2^b - 1 is invalid); value = (code - s) * norm / s.
 *            Stochastic levels are unbiased; decoded values lie on the grid, signs never flip.
 *   FP4 E3M0 scale {max |x|}; code = sign << 3 | e, e in 0..7: e = 0 is zero (negative zero,
 *            code 8, is invalid), else value = sign * scale * 2^(e - 7). Rounding between the
 *            two neighbouring powers of two (or 0 and 2^-6) is stochastic (unbiased) or nearest.
 */
#include "quant_impl.h"
#include "crc32.h"

#include <float.h>
#include <zlib.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* The stochastic rounding loops written with AVX2 intrinsics are for AVX2 cores; where the
 * build targets AVX-512, the compiler's 512-bit form of the plain loops is used instead. */
#if defined(__AVX2__) && !defined(__AVX512F__)
#define LOCO_AVX2_ROUNDING 1
#else
#define LOCO_AVX2_ROUNDING 0
#endif

/* ---- dense: none / fp16 / bf16 ------------------------------------------------------------- */

static size_t dense_elem_bytes(loco_codec_id id) { return LOCO_CODEC_NONE == id ? 4 : 2; }

static size_t dense_payload_bound(const loco_codec_params *p, size_t n, size_t rows, size_t cols)
{
    return n * dense_elem_bytes(p->id);
}

/* Is any of the len floats at x (raw bytes, any alignment) NaN or Inf? */
static uint32_t tile_nonfinite(const uint8_t *x, size_t len)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t u;
        memcpy(&u, x + 4 * i, 4);
        bad |= (uint32_t)(0x7F800000u == (u & 0x7F800000u));
    }
    return bad;
}

/* Messages at least this large are written with streaming (non-temporal) stores: a plain store
 * first reads the destination line into the cache, a third stream of memory traffic that a
 * large copy cannot afford (glibc's memcpy switches the same way, near the size of the L3). */
#define DENSE_STREAM_BYTES ((size_t)8 << 20)

/* dst[0..bytes) = src: with streaming stores for the 32-byte-aligned middle when `stream` (and
 * AVX2), else memcpy. The writing thread fences (_mm_sfence) before the bytes are read. */
static void dense_copy(uint8_t *dst, const void *src, size_t bytes, bool stream)
{
#if defined(__AVX2__)
    if (stream && bytes >= 64) {
        const uint8_t *s = src;
        size_t head = (32 - ((uintptr_t)dst & 31)) & 31;
        memcpy(dst, s, head);
        size_t i = head;
        for (; i + 32 <= bytes; i += 32) {
            _mm256_stream_si256((__m256i *)(dst + i), _mm256_loadu_si256((const __m256i *)(s + i)));
        }
        memcpy(dst + i, s + i, bytes - i);
        return;
    }
#endif
    (void)stream;
    memcpy(dst, src, bytes);
}

/* One tile of the dense encoders: the tile's values written to out (fp32, fp16 or bf16), *crc
 * continued over those bytes, *nonfinite set if an input is NaN or Inf, and the return nonzero
 * if a finite value overflowed the format (fp16 beyond 65504, bf16 beyond its largest finite
 * value). bf16 rounds to nearest even with integer arithmetic (exactly loco_f32_to_bf16 for
 * finite values); fp16 by the F16C conversion where the compiler targets it (round to nearest
 * even: equal to loco_f32_to_f16 for every finite float, checked exhaustively), else
 * base/half.h. The input is read from memory once; the checks and the CRC read it in L1. */
static uint32_t dense_encode_tile(loco_codec_id id, const float *x, size_t len, uint8_t *out,
                                  bool stream, uint32_t *nonfinite, uint32_t *crc)
{
    *nonfinite = tile_nonfinite((const uint8_t *)x, len);
    uint32_t overflow = 0;
    if (LOCO_CODEC_NONE == id) {
        *crc = loco_crc32(*crc, (const uint8_t *)x, 4 * len); /* the payload's bytes, in L1 */
        dense_copy(out, x, 4 * len, stream);
        return 0;
    }
    uint16_t h[LOCO_CODEC_TILE];
    if (LOCO_CODEC_BF16 == id) {
        for (size_t i = 0; i < len; i++) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
            h[i] = (uint16_t)r;
            overflow |= (uint32_t)(0x7F80u == (r & 0x7F80u));
        }
    } else {
        size_t i = 0;
#if defined(__F16C__) && defined(__AVX2__)
        for (; i + 8 <= len; i += 8) {
            __m128i v = _mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm_storeu_si128((__m128i *)(h + i), v);
        }
#endif
        for (; i < len; i++) {
            h[i] = loco_f32_to_f16(x[i]);
        }
        for (i = 0; i < len; i++) {
            overflow |= (uint32_t)(0x7C00u == (h[i] & 0x7C00u));
        }
    }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push /* GCC cannot see that the loops above fill h[0..len) */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
    *crc = loco_crc32(*crc, (const uint8_t *)h, 2 * len);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
    dense_copy(out, h, 2 * len, stream);
    return overflow;
}

/* out[i] += scale * value(h[i]) for validated (finite) fp16 / bf16 values at h (raw bytes).
 * fp16 by the F16C conversion where available (exact, like every fp16 -> fp32 conversion), else
 * both the normal and the subnormal reading built and one picked on integer bits (vectorisable;
 * equal to loco_f16_to_f32 for finite values). */
static LOCO_NO_TRAPPING_MATH void half_decode_add_tile(loco_codec_id id, const uint8_t *hb,
                                                       size_t len, float scale, float *out)
{
    if (LOCO_CODEC_BF16 == id) {
        for (size_t i = 0; i < len; i++) {
            uint16_t h;
            memcpy(&h, hb + 2 * i, 2);
            uint32_t u = (uint32_t)h << 16;
            float v;
            memcpy(&v, &u, 4);
            out[i] += scale * v;
        }
        return;
    }
    size_t i = 0;
#if defined(__F16C__) && defined(__AVX2__)
    const __m256 s = _mm256_set1_ps(scale);
    for (; i + 8 <= len; i += 8) {
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(hb + 2 * i)));
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), _mm256_mul_ps(s, v)));
    }
#endif
    for (; i < len; i++) {
        uint16_t h;
        memcpy(&h, hb + 2 * i, 2);
        uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
        float sub = (float)(int)m * (1.0f / 16777216.0f); /* mant * 2^-24, exact */
        uint32_t sub_bits, normal_bits = sign | ((e + 112u) << 23) | (m << 13);
        memcpy(&sub_bits, &sub, 4);
        uint32_t bits = 0 == e ? (sub_bits | sign) : normal_bits;
        float v;
        memcpy(&v, &bits, 4);
        out[i] += scale * v;
    }
}

static loco_status dense_encode(const loco_codec *codec, loco_codec_state *state,
                                const float *in, size_t n, const loco_codec_ctx *ctx,
                                loco_wire *w, uint8_t *payload, size_t cap, size_t *len,
                                loco_error *err)
{
    loco_codec_id id = codec->params.id;
    size_t elem = dense_elem_bytes(id), bytes = n * elem;
    if (bytes > cap) {
        return loco_error_set(err, LOCO_ERR_RANGE, "%s encode: needs %zu bytes, capacity %zu",
                              loco_codec_name(id), bytes, cap);
    }
    w->bucket = 0;
    uint32_t overflow = 0, nonfinite = 0;
    const bool stream = bytes >= DENSE_STREAM_BYTES;
    /* up to 64 contiguous ranges of tiles, each with its own running CRC of the bytes it
     * writes (formed from the tile in L1), combined in order below: the framing need not read
     * the payload again, and a CRC is the same however the ranges are cut */
    enum { RANGES = 64 };
    size_t ntiles = (n + LOCO_CODEC_TILE - 1) / LOCO_CODEC_TILE;
    size_t nranges = ntiles < RANGES ? ntiles : RANGES;
    uint32_t range_crc[RANGES];
#pragma omp parallel for schedule(static) reduction(| : overflow, nonfinite) if (n >= 65536)
    for (size_t r = 0; r < nranges; r++) {
        uint32_t crc = 0;
        for (size_t tile = r * ntiles / nranges; tile < (r + 1) * ntiles / nranges; tile++) {
            size_t t = tile * LOCO_CODEC_TILE;
            size_t m = n - t < LOCO_CODEC_TILE ? n - t : LOCO_CODEC_TILE;
            uint32_t bad = 0;
            overflow |= dense_encode_tile(id, in + t, m, payload + elem * t, stream, &bad, &crc);
            nonfinite |= bad;
        }
        range_crc[r] = crc;
#if defined(__AVX2__)
        if (stream) { /* streaming stores are weakly ordered: each writer fences its own */
            _mm_sfence();
        }
#endif
    }
    w->payload_crc_known = true;
    w->payload_crc = 0;
    for (size_t r = 0; r < nranges; r++) {
        size_t first = r * ntiles / nranges * LOCO_CODEC_TILE;
        size_t last = (r + 1) * ntiles / nranges * LOCO_CODEC_TILE;
        last = last < n ? last : n;
        w->payload_crc = (uint32_t)crc32_combine(w->payload_crc, range_crc[r],
                                                 (z_off_t)((last - first) * elem));
    }
    if (nonfinite) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "%s encode: input has NaN or Inf",
                              loco_codec_name(id));
    }
    if (overflow) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "%s encode: a value exceeds the format's range (fp16 max 65504); "
                              "use bf16 or scale the input",
                              loco_codec_name(id));
    }
    *len = bytes;
    return LOCO_OK;
}

static loco_status dense_decode_add(const loco_wire *w, const uint8_t *payload, size_t len,
                                    float *out, size_t n, float scale, loco_error *err)
{
    loco_codec_id id = (loco_codec_id)w->codec;
    const char *name = loco_codec_name(id);
    size_t elem = dense_elem_bytes(id), bytes = n * elem;
    if (0 != w->bits || 0 != w->bucket || 0 != w->k || 0 != w->nonce || 0 != w->param ||
        0 != w->rows || 0 != w->cols) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s message: header fields unused by this codec are not zero",
                              name);
    }
    if (len != bytes) {
        return loco_error_set(err, len < bytes ? LOCO_ERR_TRUNCATED : LOCO_ERR_FORMAT,
                              "%s message: payload %zu bytes, exactly %zu expected", name, len,
                              bytes);
    }
    /* validate every value before touching out, straight from the payload bytes */
    uint32_t bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n >= 65536)
    for (size_t t = 0; t < n; t += LOCO_CODEC_TILE) {
        size_t m = n - t < LOCO_CODEC_TILE ? n - t : LOCO_CODEC_TILE;
        const uint8_t *p = payload + elem * t;
        if (LOCO_CODEC_NONE == id) {
            bad |= tile_nonfinite(p, m);
        } else {
            uint16_t mask = LOCO_CODEC_FP16 == id ? 0x7C00u : 0x7F80u;
            for (size_t i = 0; i < m; i++) {
                uint16_t h;
                memcpy(&h, p + 2 * i, 2);
                bad |= (uint32_t)(mask == (h & mask));
            }
        }
    }
    if (bad) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "%s message: a value is NaN or Inf",
                              name);
    }
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t t = 0; t < n; t += LOCO_CODEC_TILE) {
        size_t m = n - t < LOCO_CODEC_TILE ? n - t : LOCO_CODEC_TILE;
        const uint8_t *p = payload + elem * t;
        if (LOCO_CODEC_NONE == id) {
            for (size_t i = 0; i < m; i++) {
                float v;
                memcpy(&v, p + 4 * i, 4);
                out[t + i] += scale * v;
            }
        } else {
            half_decode_add_tile(id, p, m, scale, out + t);
        }
    }
    return LOCO_OK;
}

const loco_codec_ops loco_codec_ops_dense = {
    dense_payload_bound, dense_encode, dense_decode_add, NULL, false,
};

/* ---- shared rounding ----------------------------------------------------------------------- */

/* Round t[0..len) (finite, >= 0) to integer levels in [0, top] as codes: stochastically with
 * draws r (round up when r < frac * 65536) or to nearest when r is NULL. Integer arithmetic
 * after one truncation (= floor for t >= 0), so the compiler vectorises the loops. */
static void round_levels(const float *t, size_t len, const uint16_t *r, int top, uint8_t *codes)
{
    if (NULL == r) {
        for (size_t i = 0; i < len; i++) {
            int c = (int)(t[i] + 0.5f);
            c = c < top ? c : top;
            codes[i] = (uint8_t)c;
        }
        return;
    }
    for (size_t i = 0; i < len; i++) {
        int c = (int)t[i];
        float frac = t[i] - (float)c;
        c += (int)((float)r[i] < frac * 65536.0f);
        c = c < top ? c : top;
        codes[i] = (uint8_t)c;
    }
}

/* The careful path for extreme scales (subnormal, or a range wider than fp32): t[i] = factor *
 * (v_i - offset) / scale in double, v_i = x[i] or |x[i]|. Results lie in [0, top]. */
static void scale_values_double(const float *x, size_t len, float offset, float scale,
                                bool absolute, double factor, float *t)
{
    double k = scale > 0.0f ? factor / (double)scale : 0.0;
    for (size_t i = 0; i < len; i++) {
        t[i] = (float)(((double)(absolute ? fabsf(x[i]) : x[i]) - (double)offset) * k);
    }
}

/* ---- max-min ------------------------------------------------------------------------------- */

static loco_status maxmin_check_scales(const float *scales, int bits)
{
    if (!isfinite(scales[0]) || !isfinite(scales[1])) {
        return LOCO_ERR_NONFINITE;
    }
    double top = (double)scales[0] + (double)scales[1] * (double)((1u << bits) - 1u);
    if (scales[1] < 0.0f || !(fabs(top) <= FLT_MAX)) {
        return LOCO_ERR_RANGE;
    }
    return LOCO_OK;
}

static loco_status maxmin_scales(const loco_codec_params *p, int bits, const loco_qstats *st,
                                 size_t len, float *scales)
{
    double levels = (double)((1u << bits) - 1u);
    double unit = ((double)st->max - (double)st->min) / levels;
    if (!(unit <= FLT_MAX)) {
        return LOCO_ERR_RANGE;
    }
    /* a zero minimum and a zero unit are +0: min(-0, +0) and max(-0, +0) depend on which the
     * reduction met first (SIMD width, GPU lanes), and the bytes must not (the unit of an all-zero
     * bucket is max - min: -0 for max -0 and min +0); elsewhere the signs of zeros do not reach
     * the scales */
    scales[0] = 0.0f == st->min ? 0.0f : st->min;
    scales[1] = 0.0 == unit ? 0.0f : (float)unit;
    /* round the unit up if fp32 rounding (subnormal units) left the grid short of the max: the
     * next float up of a positive one is its bit pattern plus one (as nextafterf) */
    if ((double)scales[1] * levels < (double)st->max - (double)st->min) {
        uint32_t b;
        memcpy(&b, &scales[1], 4);
        b += 1;
        memcpy(&scales[1], &b, 4);
    }
    /* the decoder refuses a top level beyond fp32 (maxmin_check_scales): so does the encoder */
    return maxmin_check_scales(scales, bits);
}

#if LOCO_AVX2_ROUNDING
/* 32 codes (0..255, eight per vector of c) stored as bytes in order: unsigned saturation is
 * exact, and the packs interleave the 128-bit lanes, which the permute undoes. (always_inline:
 * GCC does not inline a plain inline function into fp4_quantize, whose optimize attributes
 * differ, and the call then costs FP4 a quarter of its rounding time.) */
static inline __attribute__((always_inline)) void store_codes32(const __m256i c[4],
                                                                 uint8_t *codes)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(c[0], c[1]),
                                    _mm256_packus_epi32(c[2], c[3]));
    _mm256_storeu_si256((__m256i *)codes, _mm256_permutevar8x32_epi32(b, order));
}

/* affine_levels' stochastic loop, 32 elements at a time, narrowed to bytes in registers (the
 * compiler's form stores 32-bit codes and narrows them in a second pass): the same fp32
 * operations in the same order, so the same codes. Returns the elements done. */
static inline __attribute__((always_inline)) size_t
affine_levels_stochastic32(const float *x, size_t len, float offset, float mul, bool absolute,
                           bool centered, int top, const uint16_t *r, uint8_t *codes)
{
    const __m256 off = _mm256_set1_ps(offset), m = _mm256_set1_ps(mul);
    const __m256 k16 = _mm256_set1_ps(65536.0f);
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i vtop = _mm256_set1_epi32(top);
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i c[4];
        for (int j = 0; j < 4; j++) {
            __m256 v = _mm256_loadu_ps(x + i + 8 * j);
            __m256 t = _mm256_mul_ps(_mm256_sub_ps(absolute ? _mm256_and_ps(v, magnitude) : v,
                                                   off),
                                     m);
            __m256i level = _mm256_cvttps_epi32(t); /* floor: t >= 0 */
            /* draw < (t - level) * 65536 as level * 65536 + draw < t * 65536: both sides are
             * exact in fp32 while level < 256 (the left below 2^24), so it is the same
             * decision, and a level of 256 or more is clamped to top whatever it decides */
            __m256i draw = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(r + i + 8 * j)));
            __m256 left = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_slli_epi32(level, 16), draw));
            __m256 right = _mm256_mul_ps(t, k16);
            __m256i up = _mm256_castps_si256(_mm256_cmp_ps(left, right, _CMP_LT_OQ));
            level = _mm256_min_epi32(_mm256_sub_epi32(level, up), vtop); /* up is -1 or 0 */
            if (centered) { /* top -+ level: (level ^ s) - s negates where the sign s is -1 */
                __m256i s = _mm256_srai_epi32(_mm256_castps_si256(v), 31);
                level = _mm256_add_epi32(vtop, _mm256_sub_epi32(_mm256_xor_si256(level, s), s));
            }
            c[j] = level;
        }
        store_codes32(c, codes + i);
    }
    return i;
}
#endif

/* levels[i] = round((v_i - offset) * mul) in [0, top] with v_i = x[i] (or |x[i]|), stochastic
 * with draws r or nearest: the fused one-pass form of scale_values + round_levels for scales
 * whose reciprocal is finite. With `centered` (QSGD) the code is top - level for a set sign bit
 * of x[i], else top + level. */
static inline __attribute__((always_inline)) void affine_levels(const float *x, size_t len,
                                                                float offset, float mul,
                                                                bool absolute, bool centered,
                                                                int top, const uint16_t *r,
                                                                uint8_t *codes)
{
#if LOCO_AVX2_ROUNDING
    if (NULL != r) {
        size_t done = affine_levels_stochastic32(x, len, offset, mul, absolute, centered, top, r,
                                                 codes);
        x += done;
        r += done;
        codes += done;
        len -= done;
    }
#endif
    int32_t c32[LOCO_CODEC_TILE]; /* 32-bit codes, narrowed after: no byte repacking in the loop */
    for (size_t i = 0; i < len; i++) {
        float t = ((absolute ? fabsf(x[i]) : x[i]) - offset) * mul;
        int c;
        if (NULL == r) {
            c = (int)(t + 0.5f);
        } else {
            c = (int)t;
            c += (int)((float)r[i] < (t - (float)c) * 65536.0f);
        }
        c32[i] = c < top ? c : top;
    }
    for (size_t i = 0; i < len; i++) {
        int c = c32[i];
        if (centered) {
            uint32_t u;
            memcpy(&u, &x[i], 4);
            c = (u >> 31) ? top - c : top + c;
        }
        codes[i] = (uint8_t)c;
    }
}

static void maxmin_quantize(const float *x, size_t len, const float *scales, int bits,
                            const uint16_t *r, uint8_t *codes)
{
    int top = (int)((1u << bits) - 1u);
    bool divide;
    float inv = loco_qinverse(scales[1], &divide);
    /* fp32 fast path unless the unit is subnormal or x - min could overflow (range > 1e38) */
    if (!divide && (double)scales[1] * top < 1e38) {
        if (NULL != r) {
            affine_levels(x, len, scales[0], inv, false, false, top, r, codes);
        } else {
            affine_levels(x, len, scales[0], inv, false, false, top, NULL, codes);
        }
        return;
    }
    float t[LOCO_CODEC_TILE];
    scale_values_double(x, len, scales[0], scales[1], false, 1.0, t);
    round_levels(t, len, r, top, codes);
}

static void maxmin_dequant_add(const uint8_t *codes, size_t len, const float *scales, int bits,
                               float scale, float *out)
{
    float mn = scales[0], unit = scales[1];
    if ((double)unit * ((1u << bits) - 1u) > 1e38) { /* code * unit could overflow fp32 */
        for (size_t i = 0; i < len; i++) {
            out[i] += scale * (float)((double)mn + (double)codes[i] * (double)unit);
        }
        return;
    }
    for (size_t i = 0; i < len; i++) {
        out[i] += scale * (mn + (float)codes[i] * unit);
    }
}

static const loco_qkind maxmin_kind = {
    "maxmin", false, 0, 1, 8, true, 2, LOCO_QSTAT_MINMAX, NULL,
    maxmin_scales, maxmin_quantize, maxmin_check_scales, maxmin_dequant_add, NULL, false, NULL,
};

/* ---- QSGD ---------------------------------------------------------------------------------- */

static loco_status qsgd_scales(const loco_codec_params *p, int bits, const loco_qstats *st,
                               size_t len, float *scales)
{
    double norm = sqrt(st->sumsq);
    if (!(norm <= FLT_MAX)) {
        return LOCO_ERR_RANGE;
    }
    scales[0] = (float)norm;
    return LOCO_OK;
}

static void qsgd_quantize(const float *x, size_t len, const float *scales, int bits,
                          const uint16_t *r, uint8_t *codes)
{
    int s = (int)((1u << (bits - 1)) - 1u);
    float mul = scales[0] > 0.0f ? (float)s / scales[0] : 0.0f; /* levels per unit of |x| */
    if (mul <= 3e38f) {
        if (NULL != r) {
            affine_levels(x, len, 0.0f, mul, true, true, s, r, codes);
        } else {
            affine_levels(x, len, 0.0f, mul, true, true, s, NULL, codes);
        }
        return;
    }
    /* a tiny norm: s / norm overflows fp32 */
    uint8_t level[LOCO_CODEC_TILE];
    float t[LOCO_CODEC_TILE];
    scale_values_double(x, len, 0.0f, scales[0], true, (double)s, t);
    round_levels(t, len, r, s, level);
    for (size_t i = 0; i < len; i++) { /* sign from the sign bit: -0.0 has level 0 anyway */
        uint32_t u;
        memcpy(&u, &x[i], 4);
        codes[i] = (uint8_t)((u >> 31) ? s - level[i] : s + level[i]);
    }
}

/* Codes run 0 .. 2 s = 2^b - 2: all b bits set is the one b-bit value that is not a code. */
static bool qsgd_codes_ok(const uint8_t *packed, size_t len, int bits)
{
    return !loco_packed_has_code(packed, len, bits, (1u << bits) - 1u);
}

static void qsgd_dequant_add(const uint8_t *codes, size_t len, const float *scales, int bits,
                             float scale, float *out)
{
    float s = (float)((1u << (bits - 1)) - 1u);
    float step = scales[0] / s;
    for (size_t i = 0; i < len; i++) {
        out[i] += scale * (((float)codes[i] - s) * step);
    }
}

static const loco_qkind qsgd_kind = {
    "qsgd", false, 0, 2, 8, true, 1, LOCO_QSTAT_SUMSQ, qsgd_codes_ok,
    qsgd_scales, qsgd_quantize, loco_qcheck_nonneg_scale, qsgd_dequant_add, NULL, false, NULL,
};

/* ---- FP4 E3M0 ------------------------------------------------------------------------------ */

static loco_status absmax_scales(const loco_codec_params *p, int bits, const loco_qstats *st,
                                 size_t len, float *scales)
{
    scales[0] = loco_bits_f32(st->absmax_bits);
    return LOCO_OK;
}

/* FP4 code of t = |x| / max|x| (finite, >= 0) for an input with bits xb. Above 2^-6, t lies
 * between 2^ea and 2^(ea+1): codes ea + 7 and ea + 8, and the fraction is the mantissa m / 2^23,
 * so "draw < frac * 65536" is exactly draw * 128 < m in integers; below, t lies between 0 and
 * 2^-6 (codes 0 and 1) with frac = t * 64 (exact). Rounds up by the draw, or for draw < 0 to
 * nearest (frac >= 0.5). Integer arithmetic on 32-bit lanes so the loops vectorise. */
static inline __attribute__((always_inline)) uint32_t fp4_code(float t, uint32_t xb, int draw)
{
    uint32_t ab; /* t >= 0 orders like its bits: min with 1.0f in integers */
    memcpy(&ab, &t, 4);
    ab = ab < 0x3F800000u ? ab : 0x3F800000u;
    bool big = ab >= 0x3C800000u; /* t >= 2^-6 */
    uint32_t m = ab & 0x7FFFFFu;
    float a;
    memcpy(&a, &ab, 4);
    bool up;
    if (draw < 0) {
        up = big ? m >= 0x400000u : ab >= 0x3C000000u; /* frac >= 0.5; small: t >= 2^-7 */
    } else {
        up = big ? (uint32_t)draw << 7 < m : (float)draw < a * 4194304.0f;
    }
    int e = (big ? (int)(ab >> 23) - 120 : 0) + (int)up; /* ea + 7 = exponent field - 120 */
    int neg = (int)(xb >> 31) << 3;
    return (uint32_t)(0 == e ? 0 : (neg | e));
}

#if LOCO_AVX2_ROUNDING
/* fp4_code for t = |x| * inv with draws r, 32 elements at a time, narrowed to bytes in
 * registers: the same operations on the same bits, so the same codes. Returns the elements
 * done. */
static inline __attribute__((always_inline)) size_t
fp4_codes_stochastic32(const float *x, size_t len, float inv, const uint16_t *r, uint8_t *codes)
{
    const __m256 vinv = _mm256_set1_ps(inv), k22 = _mm256_set1_ps(4194304.0f);
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i one = _mm256_set1_epi32(0x3F800000), below_big = _mm256_set1_epi32(0x3C7FFFFF);
    const __m256i mantissa = _mm256_set1_epi32(0x7FFFFF), bias = _mm256_set1_epi32(120);
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i c[4];
        for (int j = 0; j < 4; j++) {
            __m256 v = _mm256_loadu_ps(x + i + 8 * j);
            __m256 t = _mm256_mul_ps(_mm256_and_ps(v, magnitude), vinv);
            __m256i ab = _mm256_min_epu32(_mm256_castps_si256(t), one); /* t >= 0: min(t, 1) */
            __m256i big = _mm256_cmpgt_epi32(ab, below_big);             /* t >= 2^-6 */
            __m256i draw = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(r + i + 8 * j)));
            __m256i up_big = _mm256_cmpgt_epi32(_mm256_and_si256(ab, mantissa),
                                                _mm256_slli_epi32(draw, 7));
            __m256i up_small = _mm256_castps_si256(
                _mm256_cmp_ps(_mm256_cvtepi32_ps(draw),
                              _mm256_mul_ps(_mm256_castsi256_ps(ab), k22), _CMP_LT_OQ));
            __m256i up = _mm256_blendv_epi8(up_small, up_big, big);
            /* exponent field - 120, or 0 below 2^-6: a saturating 16-bit subtract (the field
             * fits the low half of each lane) */
            __m256i e = _mm256_subs_epu16(_mm256_srli_epi32(ab, 23), bias);
            e = _mm256_sub_epi32(e, up); /* up is -1 or 0 */
            /* the sign bit where e > 0: min(sign, e) is 1 exactly then */
            __m256i neg = _mm256_min_epu32(_mm256_srli_epi32(_mm256_castps_si256(v), 31), e);
            c[j] = _mm256_or_si256(e, _mm256_slli_epi32(neg, 3));
        }
        store_codes32(c, codes + i);
    }
    return i;
}
#endif

/* FP4 codes of len values: t = |x| * inv, or t[] when given (a subnormal scale); draws r or
 * NULL for nearest. Inlined with constant NULL-ness so each variant vectorises; the codes are
 * computed in 32-bit lanes (c32) and narrowed in a second loop, which keeps the vector code
 * free of byte repacking. */
static inline __attribute__((always_inline)) LOCO_NO_TRAPPING_MATH void
fp4_codes(const float *x, size_t len, float inv, const float *t, const uint16_t *r,
          uint8_t *codes)
{
    uint32_t c32[LOCO_CODEC_TILE];
    for (size_t i = 0; i < len; i++) {
        uint32_t xb;
        memcpy(&xb, &x[i], 4);
        float ti = NULL != t ? t[i] : fabsf(x[i]) * inv;
        c32[i] = fp4_code(ti, xb, NULL != r ? (int)r[i] : -1);
    }
    for (size_t i = 0; i < len; i++) {
        codes[i] = (uint8_t)c32[i];
    }
}

static LOCO_NO_TRAPPING_MATH void fp4_quantize(const float *x, size_t len, const float *scales,
                                               int bits, const uint16_t *r, uint8_t *codes)
{
    bool divide;
    float inv = loco_qinverse(scales[0], &divide);
    if (divide) {
        float t[LOCO_CODEC_TILE];
        scale_values_double(x, len, 0.0f, scales[0], true, 1.0, t);
        fp4_codes(x, len, 0.0f, t, r, codes);
    } else if (NULL != r) {
        size_t done = 0;
#if LOCO_AVX2_ROUNDING
        done = fp4_codes_stochastic32(x, len, inv, r, codes);
#endif
        fp4_codes(x + done, len - done, inv, NULL, r + done, codes + done);
    } else {
        fp4_codes(x, len, inv, NULL, NULL, codes);
    }
}

/* Code 8 (a negative zero) is the one nibble that is not an FP4 code. */
static bool fp4_codes_ok(const uint8_t *packed, size_t len, int bits)
{
    return !loco_packed_has_code(packed, len, 4, 8u);
}

/* scale * value of every code: 0 for e = 0, else +-scales[0] * 2^(e - 7). The power of two is a
 * product with an exact constant: correctly rounded, so equal to ldexpf even for subnormals. */
static void fp4_lut(float absmax, float scale, float lut[16])
{
    static const float pow2[8] = {0.0f,       1.0f / 64.0f, 1.0f / 32.0f, 1.0f / 16.0f,
                                  1.0f / 8.0f, 1.0f / 4.0f,  1.0f / 2.0f,  1.0f};
    for (int c = 0; c < 16; c++) {
        float v = absmax * pow2[c & 7];
        lut[c] = scale * ((c & 8) ? -v : v);
    }
}

/* out[i] += lut[code i] straight from the packed nibbles (element 2 k in the low nibble of byte
 * k): with AVX2, 16 codes per step, each looked up in the 16-entry table by two in-register
 * permutes (entries 0..7 and 8..15) and a blend on the code's bit 3. */
static void fp4_dequant_add_packed(const uint8_t *packed, size_t len, const float *scales,
                                   int bits, float scale, float *out)
{
    float lut[16];
    fp4_lut(scales[0], scale, lut);
    size_t i = 0;
#if defined(__AVX2__)
    const __m256 lo = _mm256_loadu_ps(lut), hi = _mm256_loadu_ps(lut + 8);
    const __m128i nibble = _mm_set1_epi8(0x0F);
    for (; i + 16 <= len; i += 16) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(packed + i / 2));
        __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(b, nibble),
                                          _mm_and_si128(_mm_srli_epi16(b, 4), nibble));
        for (int h = 0; h < 2; h++) {
            __m256i c = _mm256_cvtepu8_epi32(h ? _mm_srli_si128(codes, 8) : codes);
            __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c),
                                        _mm256_permutevar8x32_ps(hi, c),
                                        _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
            float *o = out + i + 8 * h;
            _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), v));
        }
    }
#endif
    for (; i < len; i++) {
        out[i] += lut[(packed[i / 2] >> (4 * (i % 2))) & 15];
    }
}

static const loco_qkind fp4_kind = {
    "fp4", false, 4, 4, 4, true, 1, 0, fp4_codes_ok,
    absmax_scales, fp4_quantize, loco_qcheck_nonneg_scale, NULL, fp4_dequant_add_packed, false,
    NULL,
};

/* ---- codec tables ---------------------------------------------------------------------------- */

LOCO_QUANT_OPS(maxmin, maxmin_kind);
LOCO_QUANT_OPS(qsgd, qsgd_kind);
LOCO_QUANT_OPS(fp4, fp4_kind);
