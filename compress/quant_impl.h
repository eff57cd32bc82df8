/* compress/quant_impl.h — private: the bucketed-quantizer framework shared by max-min, QSGD,
 * FP4, ternary and sign (quant_common.c drives it, quant_stats.c forms the bucket statistics;
 * each family supplies a loco_qkind).
 *
 * Payload: the scales of every bucket (scale_floats fp32 each, bucket order), then each
 * bucket's codes, each bucket's run byte-aligned: ceil(len * bits / 8) bytes for b-bit codes,
 * ceil(len / 5) bytes for ternary (5 trits per byte, byte = t0 + 3 t1 + 9 t2 + 27 t3 + 81 t4).
 * A bucket of B elements is cut into tiles of LOCO_CODEC_TILE (4000, a multiple of 8 and 5, so
 * every tile starts on a byte); tiles are the unit of parallel work, so bytes never depend on
 * the thread count.
 */
#ifndef LOCO_COMPRESS_QUANT_IMPL_H
#define LOCO_COMPRESS_QUANT_IMPL_H

#include "codec_impl.h"

/* GCC if-converts (and so vectorises) loops with conditional float operations only without
 * -ftrapping-math; loco never reads FP exception flags, so this changes no result. */
#if defined(__GNUC__) && !defined(__clang__)
#define LOCO_NO_TRAPPING_MATH __attribute__((optimize("no-trapping-math", "fp-contract=off")))
#else
#define LOCO_NO_TRAPPING_MATH
#endif

/* Statistics of a bucket; which ones are computed is a mask of LOCO_QSTAT_*. */
enum {
    LOCO_QSTAT_MINMAX = 1, /* min, max */
    LOCO_QSTAT_SUM = 2,    /* sum, sumsq */
    LOCO_QSTAT_SUMSQ = 4,  /* sumsq */
    LOCO_QSTAT_SUMABS = 8, /* sumabs */
};

typedef struct loco_qstats {
    float min, max;
    uint32_t absmax_bits; /* max of (bits & 0x7FFFFFFF): >= 0x7F800000 means a NaN/Inf */
    double sum, sumsq, sumabs;
} loco_qstats;

/* The identity of loco_qstats_merge (min FLT_MAX, max -FLT_MAX, sums 0). */
void loco_qstats_identity(loco_qstats *st);

/* a = a merged with b (min, max, largest magnitude; sums added, b's after a's). */
void loco_qstats_merge(loco_qstats *a, const loco_qstats *b);

/* The statistics in `want` (LOCO_QSTAT_*) of one tile x[0..len): sums over 8 interleaved double
 * lanes (lane l takes elements l, l + 8, ... in order), lanes added 0..7. A NaN/Inf input shows as
 * absmax_bits >= 0x7F800000. */
void loco_qstats_tile(const float *x, size_t len, unsigned want, loco_qstats *st);

/* The same for two tiles of len elements each, their dependent add chains interleaved (the same
 * results as two loco_qstats_tile calls, faster: one tile runs at the adder's latency). */
void loco_qstats_pair(const float *x0, const float *x1, size_t len, unsigned want,
                      loco_qstats st[2]);

/* A quantizer family. */
typedef struct loco_qkind {
    const char *name;
    bool base3;             /* ternary: 5 trits per byte instead of b-bit codes */
    int fixed_bits;         /* code bits when fixed by the family (sign 1, FP4 4), else 0 */
    int min_bits, max_bits; /* allowed params.bits when not fixed */
    bool stochastic;   /* uses random draws when params.stochastic (sign never does) */
    int scale_floats;  /* fp32 values per bucket in the scales region */
    unsigned stats;    /* LOCO_QSTAT_* the scales need */
    /* Decoder check that every code of a packed run of len codes is in the alphabet (NULL:
     * every b-bit value is valid); padding is already known to be zero. */
    bool (*codes_ok)(const uint8_t *packed, size_t len, int bits);
    /* Scales of one bucket of len elements from its statistics; LOCO_ERR_RANGE if the result
     * is not representable in fp32. */
    loco_status (*scales)(const loco_codec_params *p, int bits, const loco_qstats *st,
                          size_t len, float *scales);
    /* Codes of len elements with the bucket's scales; r holds 16-bit draws or is NULL for
     * nearest rounding. NULL when quantize_packed is set. */
    void (*quantize)(const float *x, size_t len, const float *scales, int bits, const uint16_t *r,
                     uint8_t *codes);
    /* Decoder check of one bucket's scales: LOCO_ERR_NONFINITE / LOCO_ERR_RANGE. */
    loco_status (*check_scales)(const float *scales, int bits);
    /* out[i] += scale * value(codes[i]) for len elements (NULL when dequant_add_packed is set). */
    void (*dequant_add)(const uint8_t *codes, size_t len, const float *scales, int bits,
                        float scale, float *out);
    /* Optional: the same straight from a validated packed run (skips unpacking); NULL if none. */
    void (*dequant_add_packed)(const uint8_t *packed, size_t len, const float *scales, int bits,
                               float scale, float *out);
    /* The codes do not depend on the scales (sign): long buckets are coded in the statistics
     * pass, reading the input once. */
    bool scale_free_codes;
    /* For a family without draws (sign), instead of quantize: the codes of len elements
     * written straight as their packed run (the bytes run_pack makes of them, padding bits
     * zero); NULL otherwise. */
    void (*quantize_packed)(const float *x, size_t len, const float *scales, int bits,
                            uint8_t *packed);
} loco_qkind;

/* Code bits of a family under params (0 for base-3); the header's bits field carries them. */
int loco_quant_bits(const loco_qkind *kind, const loco_codec_params *p);

/* 1 / scale for scale > 0, else 0; *divide is set when the reciprocal overflows (a subnormal
 * scale), so callers divide instead of multiplying. */
static inline float loco_qinverse(float scale, bool *divide)
{
    float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    *divide = scale > 0.0f && !(inv <= 3.0e38f);
    return inv;
}

/* The 5 trits of each byte value 0..242 of a ternary run (quant_common.c). */
extern const uint8_t loco_trit_table[243][5];

/* Largest payload of a family for n elements. */
size_t loco_quant_payload_bound(const loco_qkind *kind, const loco_codec_params *p, size_t n);

/* Encode in[0..n) into payload (cap bytes); *len gets the payload length. Where the encoder
 * formed the payload's CRC-32 while the bytes were in cache (short buckets), it sets
 * w->payload_crc and w->payload_crc_known. */
loco_status loco_quant_encode(const loco_qkind *kind, const loco_codec_params *p, const float *in,
                              size_t n, const loco_codec_ctx *ctx, uint8_t *payload, size_t cap,
                              size_t *len, loco_wire *w, loco_error *err);

/* Validate the whole payload, then out[i] += scale * decoded[i]. */
loco_status loco_quant_decode_add(const loco_qkind *kind, const loco_wire *w,
                                  const uint8_t *payload, size_t len, float *out, size_t n,
                                  float scale, loco_error *err);

/* Does a packed run of len b-bit codes hold the code `bad`? Nibble-wide (b = 4) and byte-wide
 * (b = 8) runs are checked eight bytes at a time without unpacking; other widths are unpacked a
 * tile at a time. */
bool loco_packed_has_code(const uint8_t *packed, size_t len, int bits, unsigned bad);

/* Scale check shared by families with one scale that must be finite and >= 0. */
loco_status loco_qcheck_nonneg_scale(const float *scales, int bits);

/* Define loco_codec_ops_NAME for a family described by the loco_qkind KIND. */
#define LOCO_QUANT_OPS(NAME, KIND)                                                              \
    static size_t NAME##_payload_bound(const loco_codec_params *p, size_t n, size_t rows,      \
                                       size_t cols)                                            \
    {                                                                                          \
        return loco_quant_payload_bound(&KIND, p, n);                                          \
    }                                                                                          \
    static loco_status NAME##_encode(const loco_codec *codec, loco_codec_state *state,         \
                                     const float *in, size_t n, const loco_codec_ctx *ctx,     \
                                     loco_wire *w, uint8_t *payload, size_t cap, size_t *len,  \
                                     loco_error *err)                                          \
    {                                                                                          \
        w->bits = (uint8_t)loco_quant_bits(&KIND, &codec->params);                             \
        return loco_quant_encode(&KIND, &codec->params, in, n, ctx, payload, cap, len, w,      \
                                 err);                                                         \
    }                                                                                          \
    static loco_status NAME##_decode_add(const loco_wire *w, const uint8_t *payload,           \
                                         size_t len, float *out, size_t n, float scale,        \
                                         loco_error *err)                                      \
    {                                                                                          \
        return loco_quant_decode_add(&KIND, w, payload, len, out, n, scale, err);              \
    }                                                                                          \
    const loco_codec_ops loco_codec_ops_##NAME = {                                             \
        NAME##_payload_bound, NAME##_encode, NAME##_decode_add, NULL, false,                   \
    }

#endif /* LOCO_COMPRESS_QUANT_IMPL_H */
