/* compress/codec_impl.h — private to compress/: the wire header, the per-codec function table,
 * the codec state layout and small helpers shared by the codec families.
 *
 * Wire header (72 bytes, little-endian), followed by payload_len bytes of payload:
 *   off size field
 *    0   4   magic "LOCC" (0x43434F4C)
 *    4   1   version (LOCO_WIRE_VERSION)
 *    5   1   codec id
 *    6   1   bits (quantizers; 0 otherwise)
 *    7   1   flags: bit0 stochastic, bit1 entropy stage on, bit2 payload deflated
 *    8   8   n: element count
 *   16   8   k: kept entries (top-k, DGC, random-k, DCT total) or 0
 *   24   8   nonce: random-k index seed, else 0
 *   32   8   payload_len: bytes after the header, as sent
 *   40   8   raw_len: payload bytes before deflate (== payload_len when not deflated)
 *   48   4   bucket (quantizers; 0 = whole message)
 *   52   4   param: DCT chunk_topk, PowerSGD rank, else 0
 *   56   4   rows, 60 4 cols: DCT / PowerSGD shape, else 0
 *   64   4   reserved, must be 0
 *   68   4   CRC32 (zlib) of bytes [0, 68) then the payload
 */
#ifndef LOCO_COMPRESS_CODEC_IMPL_H
#define LOCO_COMPRESS_CODEC_IMPL_H

#include "codec.h"
#include "base/base.h"

#include <math.h>
#include <string.h>

/* Bitwise-identical results on every build: no fused multiply-add contraction in compress/.
 * Decoding fuses `out += scale * v` into an FMA on a build for a CPU that has one and not on
 * another, so two members decoding the same message would hold different bits (measured:
 * max-min and DCT decodes differed between -march=native and portable builds). Every file of
 * compress/ includes this header first. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define LOCO_WIRE_MAGIC 0x43434F4Cu
#define LOCO_WIRE_VERSION 1
#define LOCO_WIRE_HEADER_BYTES 72
#define LOCO_WIRE_FLAG_STOCHASTIC 0x1u
#define LOCO_WIRE_FLAG_ENTROPY 0x2u
#define LOCO_WIRE_FLAG_DEFLATED 0x4u
#define LOCO_WIRE_FLAGS_KNOWN 0x7u

/* The decoded header fields. */
typedef struct loco_wire {
    uint8_t codec, bits, flags;
    uint64_t n, k, nonce;
    uint64_t payload_len, raw_len;
    uint32_t bucket, param, rows, cols;
    /* Encoder only: the raw payload's CRC-32, when the encoder formed it while the bytes were
     * in cache (loco_wire_frame then combines it with the header's instead of reading the
     * payload again; unused when the payload is deflated). */
    bool payload_crc_known;
    uint32_t payload_crc;
} loco_wire;

/* A tensor's codec state: its shape plus one block of codec-specific memory. */
struct loco_codec_state {
    loco_codec_id id;
    size_t rows, cols, n;
    /* top-k / DGC selection scratch */
    uint32_t *sel_idx;  /* (sel_cap) */
    float *sel_val;     /* (sel_cap) */
    size_t sel_cap;
    uint32_t *scratch;  /* (scratch_words): radix-select histograms and candidates (topk.h) */
    size_t scratch_words;
    /* DGC */
    float *momentum;    /* u (n) */
    float *velocity;    /* v (n) */
    float *sample;      /* (sample_cap) sampled |v| */
    size_t sample_cap;
    /* PowerSGD */
    float *q;           /* (cols, rank): warm-started right factor */
    float *p;           /* (rows, rank) */
    size_t q_len, p_len;
    bool q_ready;
    bool has_dgc;       /* momentum and velocity (n each) allocated */
    void *block;        /* the one allocation behind every pointer above */
};

struct loco_codec;

/* One codec family's functions. encode writes the payload (cap bytes available) and fills the
 * header fields it owns (k, nonce, rows, cols, param); decode validates everything first and
 * only then accumulates into out. */
typedef struct loco_codec_ops {
    /* Largest payload for n elements shaped rows x cols (rows == 0: any shape). */
    size_t (*payload_bound)(const loco_codec_params *p, size_t n, size_t rows, size_t cols);
    loco_status (*encode)(const struct loco_codec *codec, loco_codec_state *state,
                          const float *in, size_t n, const loco_codec_ctx *ctx, loco_wire *w,
                          uint8_t *payload, size_t cap, size_t *len, loco_error *err);
    loco_status (*decode_add)(const loco_wire *w, const uint8_t *payload, size_t len,
                              float *out, size_t n, float scale, loco_error *err);
    /* Size the state's scratch (sel_cap, scratch_words, sample_cap, q_len, p_len, has_dgc) for a
     * rows x cols tensor; NULL when the codec needs no scratch. */
    void (*state_plan)(const loco_codec_params *p, loco_codec_state *s);
    bool needs_state;
} loco_codec_ops;

struct loco_codec {
    loco_codec_params params;
    const loco_codec_ops *ops;
};

/* The families (one definition per file). */
extern const loco_codec_ops loco_codec_ops_dense;    /* none, fp16, bf16: quant.c */
extern const loco_codec_ops loco_codec_ops_maxmin;   /* quant.c */
extern const loco_codec_ops loco_codec_ops_qsgd;     /* quant.c */
extern const loco_codec_ops loco_codec_ops_fp4;      /* quant.c */
extern const loco_codec_ops loco_codec_ops_ternary;  /* ternary.c */
extern const loco_codec_ops loco_codec_ops_sign;     /* sign.c */
extern const loco_codec_ops loco_codec_ops_topk;     /* topk.c */
extern const loco_codec_ops loco_codec_ops_dgc;      /* dgc.c */
extern const loco_codec_ops loco_codec_ops_randk;    /* randk.c */
extern const loco_codec_ops loco_codec_ops_dct;      /* dct.c */
extern const loco_codec_ops loco_codec_ops_powersgd; /* powersgd.c */

/* ---- little-endian loads and stores (alignment-free) ------------------------------------ */

static inline void loco_put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void loco_put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void loco_put_f32(uint8_t *p, float v) { memcpy(p, &v, 4); }
static inline uint32_t loco_get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t loco_get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline float loco_get_f32(const uint8_t *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

/* True when every one of the n floats is finite (checks the exponent bits). */
bool loco_all_finite(const float *x, size_t n);

/* The stochastic-rounding stream of a message (see codec.h). */
static inline uint64_t loco_codec_stream(const loco_codec_ctx *ctx)
{
    return loco_rng_stream_id(ctx->step, ctx->rank, ctx->tensor);
}

/* Fill r[0..len) with the 16-bit uniform draws of elements first .. first+len-1 of the message
 * with (seed, stream), from generator rng (layout in codec.h). */
void loco_codec_draws16(loco_codec_rng rng, uint64_t seed, uint64_t stream, size_t first,
                        size_t len, uint16_t *r);

/* The header fields every encoder starts from: codec id, bits, flags, n, bucket (codec.c). */
void loco_wire_init(const struct loco_codec *codec, size_t n, loco_wire *w);

/* Finish a message whose raw payload (raw bytes) is at out + LOCO_WIRE_HEADER_BYTES: the
 * entropy stage when the codec asks for it, then the header and its CRC; *out_len = the message
 * length. Shared by loco_codec_encode_ex and the GPU encoder (codec_cuda.c). */
loco_status loco_wire_frame(const struct loco_codec *codec, loco_wire *w, uint8_t *out,
                            size_t raw, size_t *out_len, loco_error *err);

/* Open a message of n elements: check its framing (magic, version, lengths, CRC, codec id),
 * that it carries n elements, inflate a deflated payload into a fresh buffer (*owned, to free()
 * after use; NULL otherwise) and point *payload / *payload_len at the raw payload. */
loco_status loco_wire_open(const uint8_t *msg, size_t len, size_t n, loco_wire *w,
                           const uint8_t **payload, size_t *payload_len, uint8_t **owned,
                           loco_error *err);

/* Scratch for a stateless call: allocate what a state would hold for n elements (1 x n). */
loco_status loco_codec_scratch_state(const struct loco_codec *codec, size_t n,
                                     loco_codec_state **state, loco_error *err);

#endif /* LOCO_COMPRESS_CODEC_IMPL_H */
