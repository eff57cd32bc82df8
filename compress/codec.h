/* compress/codec.h — gradient/update compression: the codec interface (DESIGN.md §7).
 *
 * A codec turns n fp32 values into at most loco_codec_bound(n) bytes and back. Every encoded
 * message is self-describing: a header (magic, version, codec id, element count, codec
 * parameters, payload length, CRC32) then the payload. Decoding validates every field before
 * use and *accumulates* into the output (out[i] += scale * decoded[i]), so a receiver can sum
 * several peers' messages without a temporary buffer.
 *
 * Codecs are pure functions (no I/O, no global state). Randomness (stochastic rounding, random-k)
 * comes from Philox keyed by loco_codec_ctx {seed, step, rank, tensor} and the element index, so
 * the bytes depend only on the input and the context — never on thread count or machine — and a
 * CPU and a GPU worker produce identical messages.
 *
 * Per-tensor state (error feedback residuals, DGC momentum, PowerSGD's warm-started Q) lives in
 * loco_codec_state, owned by the caller (one per tensor) and created by loco_codec_state_init.
 *
 * Status: this header is the contract between compress/ (which implements it), collectives/
 * (whose compressed allreduce calls encode/decode_add per chunk) and optim/ (whose strategies
 * wrap it in error feedback). The compression issue fills in the codec families.
 */
#ifndef LOCO_COMPRESS_CODEC_H
#define LOCO_COMPRESS_CODEC_H

#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum loco_codec_id {
    LOCO_CODEC_NONE = 0, /* raw fp32 */
    LOCO_CODEC_FP16 = 1,
    LOCO_CODEC_BF16 = 2,
    LOCO_CODEC_MAXMIN = 3,   /* b-bit max-min quantization per bucket */
    LOCO_CODEC_QSGD = 4,     /* b-bit norm-scaled quantization per bucket */
    LOCO_CODEC_FP4 = 5,      /* FP4 E3M0 per bucket */
    LOCO_CODEC_TERNARY = 6,  /* TernGrad */
    LOCO_CODEC_SIGN = 7,     /* sign with scale (EF-signSGD) */
    LOCO_CODEC_TOPK = 8,     /* exact top-k (radix select) */
    LOCO_CODEC_DGC = 9,      /* top-k by DGC's sampled threshold */
    LOCO_CODEC_RANDK = 10,   /* random-k with a shared seed (no indices sent) */
    LOCO_CODEC_DCT_TOPK = 11,/* DeMo: DCT-II on chunks, top-k per chunk */
    LOCO_CODEC_POWERSGD = 12,/* low rank, for matrices */
    LOCO_CODEC_COUNT
} loco_codec_id;

/* What a codec is asked to do; src/config.c fills this from YAML (codec: {...}). */
typedef struct loco_codec_params {
    loco_codec_id id;
    int bits;           /* quantizers: 1..8 */
    int bucket;         /* elements per scale bucket (quantizers, ternary) */
    bool stochastic;    /* stochastic (unbiased) vs nearest rounding */
    float density;      /* top-k / DGC / random-k: kept fraction in (0, 1] */
    int chunk_topk;     /* DCT top-k: coefficients kept per chunk */
    int rank;           /* PowerSGD rank */
    float clip_sigma;   /* TernGrad clipping at clip_sigma * std (0 = off) */
    bool entropy;       /* add the entropy stage (index coding, deflate when it pays) */
} loco_codec_params;

/* Identifies a message for the counter-based RNG: every worker can reproduce every draw. */
typedef struct loco_codec_ctx {
    uint64_t seed;   /* run seed */
    uint64_t step;   /* training step or round */
    uint32_t rank;   /* sender */
    uint32_t tensor; /* tensor index in the tensor table, or chunk id in a collective */
} loco_codec_ctx;

typedef struct loco_codec loco_codec;             /* params + function table (opaque) */
typedef struct loco_codec_state loco_codec_state; /* one tensor's codec state (opaque) */

/* Create a codec from params; invalid params (bits out of 1..8, density out of (0, 1], ...)
 * give LOCO_ERR_CONFIG naming the field and the allowed range. */
loco_status loco_codec_init(loco_codec **codec, const loco_codec_params *params, loco_error *err);
void loco_codec_free(loco_codec *codec);
const loco_codec_params *loco_codec_get_params(const loco_codec *codec);
const char *loco_codec_name(loco_codec_id id);

/* Largest message (header included) that encoding n elements can produce. */
size_t loco_codec_bound(const loco_codec *codec, size_t n);

/* Per-tensor state for n elements shaped rows x cols (rows * cols == n; rows = 1 for vectors).
 * Stateless codecs may leave *state NULL. */
loco_status loco_codec_state_init(loco_codec_state **state, const loco_codec *codec, size_t rows,
                                  size_t cols, loco_error *err);
void loco_codec_state_free(loco_codec_state *state);

/* Encode n values into out (capacity cap >= loco_codec_bound(n)); *out_len receives the bytes
 * written. state may be NULL for stateless use (a collective's chunks). Non-finite input gives
 * LOCO_ERR_NONFINITE and writes nothing meaningful. */
loco_status loco_codec_encode(const loco_codec *codec, loco_codec_state *state, const float *in,
                              size_t n, const loco_codec_ctx *ctx, uint8_t *out, size_t cap,
                              size_t *out_len);

/* Validate a message and accumulate it: out[i] += scale * decoded[i] for i < n. If `expect` is
 * not NULL the message must use that codec and parameters. Any malformed field (bad magic,
 * version, CRC, codec id, count != n, index >= n, non-finite scale, ...) returns a specific
 * status and leaves out untouched. */
loco_status loco_codec_decode_add(const loco_codec *expect, const uint8_t *msg, size_t len,
                                  float *out, size_t n, float scale, const loco_codec_ctx *ctx);

#endif /* LOCO_COMPRESS_CODEC_H */
