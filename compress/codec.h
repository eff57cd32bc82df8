/* compress/codec.h — gradient/update compression: the codec interface (DESIGN.md §7).
 *
 * A codec turns n fp32 values into at most loco_codec_bound(n) bytes and back. Every encoded
 * message is self-describing: a header (magic, version, codec id, element count, codec
 * parameters, payload length, CRC32) then the payload. Decoding validates every field before
 * use and *accumulates* into the output (out[i] += scale * decoded[i]), so a receiver can sum
 * several peers' messages without a temporary buffer.
 *
 * Codecs are pure functions (no I/O, no global state). Randomness (stochastic rounding, random-k)
 * comes from Philox (or ARS, codec.rng below) keyed by loco_codec_ctx {seed, step, rank, tensor}
 * and the element index, so the bytes depend only on the input, the parameters and the
 * context — never on thread count or machine.
 * The exact draw for element i of a message (what a GPU kernel must reproduce):
 *     stream = loco_rng_stream_id(step, rank, tensor)
 *     loco_rng_block(seed, stream, i / 8, w)            four 32-bit words w[0..3]
 *     u16    = (w[(i % 8) / 2] >> (16 * (i % 2))) & 0xFFFF
 *     round up when u16 < frac * 65536 (stochastic rounding; 16-bit resolution)
 * With codec.rng = ars the quantizers' stochastic rounding takes the same halfword of
 * loco_rng_ars_block(seed, stream, i / 8, w) instead (ARS-7 on the AES unit, about five times
 * cheaper per draw than Philox on an AVX2 core); the GPU encoder draws Philox only, and random-k
 * and DGC always use Philox. The decoder needs no draws, so rng does not travel on the wire.
 * Scale statistics (sums) are reduced in a fixed order: 8 interleaved double lanes per tile of
 * LOCO_CODEC_TILE elements, lanes summed 0..7, tiles summed in order of 64 fixed lanes.
 *
 * Per-tensor state (DGC momentum and velocity, PowerSGD's warm-started Q, top-k scratch, the
 * tensor's shape for DCT chunking) lives in loco_codec_state, owned by the caller (one per
 * tensor) and created by loco_codec_state_init. Error feedback (EF, EF21, EControl) wraps any
 * codec and lives in compress/ef.h; the per-layer adaptive choice (L-GreCo) in compress/lgreco.h.
 *
 * Which codec for which collective: dense and quantized codecs (none .. sign, random-k) sum
 * correctly through the compressed ring (decode, add, re-encode); sparse index codecs (top-k,
 * DGC, DCT top-k) and PowerSGD messages are meant to travel by allgatherv and be decode_add-ed
 * by every receiver.
 *
 * Files, in reading order: codec.h (this contract), codec_impl.h + codec.c (wire header,
 * registry, state), quant_impl.h + quant_common.c + quant_stats.c (bucketed quantizer
 * framework, bucket statistics), quant.c (none/fp16/bf16, max-min, QSGD, FP4), ternary.c,
 * sign.c, topk.h/.c (radix select + codec), sparse_impl.h + sparse.c (index/value payload),
 * entropy.h/.c (index coders, deflate), bitpack.h/.c, draws.c (Philox and ARS draws,
 * finiteness), crc32.h/.c, dgc.h/.c, randk.c, dct.h/.c, powersgd.h/.c, ef.h/.c (error
 * feedback), lgreco.h/.c (per-tensor choice).
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

/* Largest element count of one message (indices travel as 32-bit integers). */
#define LOCO_CODEC_MAX_N ((size_t)UINT32_MAX)
/* Elements per work tile: the unit of parallel work and of the fixed reduction order. */
#define LOCO_CODEC_TILE 4000

/* Which counter-based generator makes the stochastic-rounding draws (the layout above). */
typedef enum loco_codec_rng {
    LOCO_CODEC_RNG_PHILOX = 0, /* Philox4x32-10: CPU and GPU give the same bytes */
    LOCO_CODEC_RNG_ARS = 1,    /* ARS-7: CPU only, AES-NI (portable C elsewhere, slower) */
} loco_codec_rng;

/* What a codec is asked to do; src/config.c fills this from YAML (codec: {...}). Start from
 * loco_codec_params_default(id) so fields a codec ignores hold sane values. */
typedef struct loco_codec_params {
    loco_codec_id id;
    int bits;           /* max-min: 1..8; QSGD: 2..8 (sign + level); FP4: 4 (fixed) */
    int bucket;         /* elements per scale (quantizers, ternary, sign); 0 = whole message */
    bool stochastic;    /* quantizers/ternary: stochastic (unbiased) vs nearest rounding;
                         * random-k: scale each kept value by its block length (unbiased) */
    float density;      /* top-k / DGC / random-k: kept fraction in (0, 1] */
    int chunk_topk;     /* DCT top-k: coefficients kept per chunk (1..4096) */
    int rank;           /* PowerSGD rank (1..1024) */
    float clip_sigma;   /* TernGrad clipping at clip_sigma * std (0 = off) */
    bool entropy;       /* entropy stage: index coding of sparse indices, deflate when it pays */
    float dgc_momentum;  /* DGC momentum correction m in [0, 1) */
    float dgc_sample;    /* DGC fraction of elements sampled for the threshold, (0, 1] */
    int dgc_warmup_steps;/* DGC density warm-up over the first steps (0 = off) */
    float dgc_clip_norm; /* DGC local gradient clipping to this L2 norm (0 = off) */
    loco_codec_rng rng;  /* quantizers' stochastic-rounding draws (default Philox) */
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

/* Defaults for a codec (the values listed in the report / config docs): bits 4, bucket 512,
 * stochastic, density 0.01, chunk_topk 32, rank 4, clip_sigma 2.5 (TernGrad), entropy off,
 * DGC momentum 0.9, sample 0.01, no warm-up, no clipping; sign uses bucket 0 (per message). */
loco_codec_params loco_codec_params_default(loco_codec_id id);

/* The codec's short name ("topk", "maxmin", ...), or "unknown". */
const char *loco_codec_name(loco_codec_id id);

/* Parse a short name as printed by loco_codec_name. LOCO_ERR_CONFIG listing the valid names
 * when unknown. */
loco_status loco_codec_id_parse(const char *name, loco_codec_id *id, loco_error *err);

/* Check params without creating a codec: LOCO_ERR_CONFIG naming the field and allowed range. */
loco_status loco_codec_params_validate(const loco_codec_params *params, loco_error *err);

/* Create a codec from params; invalid params (bits out of 1..8, density out of (0, 1], ...)
 * give LOCO_ERR_CONFIG naming the field and the allowed range. */
loco_status loco_codec_init(loco_codec **codec, const loco_codec_params *params, loco_error *err);
void loco_codec_free(loco_codec *codec);
const loco_codec_params *loco_codec_get_params(const loco_codec *codec);

/* Whether encode needs a loco_codec_state (DGC, PowerSGD). */
bool loco_codec_needs_state(const loco_codec *codec);

/* Entries top-k and random-k keep of n: ceil(density * n) (within float rounding of density),
 * at least 1 when n > 0. */
size_t loco_codec_keep_count(float density, size_t n);

/* Bytes of the message header (the smallest message). */
size_t loco_codec_header_bytes(void);

/* Largest message (header included) that encoding n elements can produce, for any shape. */
size_t loco_codec_bound(const loco_codec *codec, size_t n);

/* Largest message for a rows x cols tensor (tighter for DCT top-k and PowerSGD). */
size_t loco_codec_bound_shape(const loco_codec *codec, size_t rows, size_t cols);

/* Per-tensor state for n elements shaped rows x cols (rows * cols == n; rows = 1 for vectors).
 * Every codec gets a state (it holds the shape and scratch, so encode never allocates).
 * LOCO_ERR_INVALID_ARG for a zero or overflowing shape, LOCO_ERR_NOMEM on allocation failure. */
loco_status loco_codec_state_init(loco_codec_state **state, const loco_codec *codec, size_t rows,
                                  size_t cols, loco_error *err);
void loco_codec_state_free(loco_codec_state *state);

/* Forget the state's history (DGC velocity, PowerSGD warm start) but keep its shape. */
void loco_codec_state_reset(loco_codec_state *state);

/* A persistent buffer of a codec state: what a checkpoint saves and restores. */
typedef struct loco_codec_buffer {
    const char *name; /* "dgc.momentum", "dgc.velocity", "powersgd.q" */
    float *data;      /* (len) */
    size_t len;
} loco_codec_buffer;

/* Fill bufs with the state's persistent buffers; returns how many (0..2). After writing
 * restored contents into them, call loco_codec_state_mark_restored. */
int loco_codec_state_buffers(loco_codec_state *state, loco_codec_buffer bufs[2]);

/* The buffers hold restored history: PowerSGD uses its Q as the warm start. */
void loco_codec_state_mark_restored(loco_codec_state *state);

/* Encode n values into out (capacity cap >= loco_codec_bound(n)); *out_len receives the bytes
 * written. state may be NULL for stateless use (a collective's chunks): the message is then
 * shaped 1 x n and scratch is allocated per call; DGC and PowerSGD need a state and return
 * LOCO_ERR_INVALID_ARG without one. A state's n must equal n. Non-finite input gives
 * LOCO_ERR_NONFINITE; cap too small, or values whose scale/coefficients overflow fp32,
 * LOCO_ERR_RANGE. On error *out_len is 0 and the state is unchanged, except that a DGC velocity
 * that overflowed stays in the state (reset it with loco_codec_state_reset). */
loco_status loco_codec_encode(const loco_codec *codec, loco_codec_state *state, const float *in,
                              size_t n, const loco_codec_ctx *ctx, uint8_t *out, size_t cap,
                              size_t *out_len);

/* loco_codec_encode that also explains a failure in *err. */
loco_status loco_codec_encode_ex(const loco_codec *codec, loco_codec_state *state,
                                 const float *in, size_t n, const loco_codec_ctx *ctx,
                                 uint8_t *out, size_t cap, size_t *out_len, loco_error *err);

/* Validate a message and accumulate it: out[i] += scale * decoded[i] for i < n. If `expect` is
 * not NULL the message must use that codec and parameters (else LOCO_ERR_PROTOCOL). If ctx is
 * not NULL, a random-k message must carry the index nonce of (ctx->seed, step, tensor) (else
 * LOCO_ERR_PROTOCOL). Any malformed field leaves out untouched and returns a specific status:
 *   LOCO_ERR_TRUNCATED  shorter than the header or its declared payload, bits past the end
 *   LOCO_ERR_FORMAT     bad magic, reserved bits set, trailing bytes, non-monotone or zero
 *                       index gaps, codes outside the codec's alphabet, bad deflate stream
 *   LOCO_ERR_VERSION    another wire version
 *   LOCO_ERR_CHECKSUM   CRC32 mismatch
 *   LOCO_ERR_UNSUPPORTED unknown codec id
 *   LOCO_ERR_RANGE      count != n, k > n, index >= n, parameters out of range
 *   LOCO_ERR_NONFINITE  NaN/Inf scale or value
 * scale must be finite (LOCO_ERR_INVALID_ARG otherwise). */
loco_status loco_codec_decode_add(const loco_codec *expect, const uint8_t *msg, size_t len,
                                  float *out, size_t n, float scale, const loco_codec_ctx *ctx);

/* loco_codec_decode_add that also explains a failure in *err. */
loco_status loco_codec_decode_add_ex(const loco_codec *expect, const uint8_t *msg, size_t len,
                                     float *out, size_t n, float scale,
                                     const loco_codec_ctx *ctx, loco_error *err);

/* What a message header says, after its framing and CRC were checked (no payload decoding). */
typedef struct loco_codec_info {
    loco_codec_id id;
    uint64_t n;           /* elements */
    uint64_t k;           /* kept entries (sparse codecs, DCT) or 0 */
    uint32_t rows, cols;  /* shape for DCT / PowerSGD, else 0 */
    size_t payload_bytes; /* as sent (after deflate) */
    bool deflated;
} loco_codec_info;

/* Check a message's framing (magic, version, lengths, CRC, codec id) and describe it. */
loco_status loco_codec_peek(const uint8_t *msg, size_t len, loco_codec_info *info,
                            loco_error *err);

/* ---- on the GPU ------------------------------------------------------------------------ */

struct loco_cuda_ctx; /* cuda/cuda.h */

/* loco_codec_encode for input already on the GPU (dev_in: n floats on cuda's device): the
 * payload is made there (cuda/cuda.h's quantizers in one pass, or its top-k), copied to the
 * host and framed
 * exactly as loco_codec_encode frames it — the message is byte-identical to the CPU's for the
 * same input, codec and ctx. dev_payload: device scratch of loco_codec_bound(codec, n) bytes.
 * Codecs: maxmin, qsgd, fp4, ternary and sign with codec.bucket in 1..4000 (and Philox draws:
 * stochastic rounding with codec.rng = ars encodes on the CPU), topk (the
 * selection on the GPU, the index list written on the host) and dct_topk (transform, per-chunk
 * selection and packing on the GPU; n is taken as a 1 x n tensor, like the CPU codec without a
 * state) — the entropy stage runs on the host; anything else, or a build without CUDA, gives
 * LOCO_ERR_UNSUPPORTED (encode on the CPU then). Other errors as loco_codec_encode_ex.
 * dev_payload must hold loco_codec_cuda_scratch_bytes(codec, n) bytes (loco_codec_bound's, more
 * for topk and dct_topk). */
size_t loco_codec_cuda_scratch_bytes(const loco_codec *codec, size_t n);
/* Does loco_codec_encode_cuda take this codec for messages of n elements (a CUDA build, one of
 * the codecs above, quantizer buckets within the GPU's limit)? */
bool loco_codec_cuda_encodes(const loco_codec_params *p, size_t n);
/* The same for a rows x cols tensor: dct_topk chunks it as the CPU codec does with a state of
 * that shape (loco_codec_state_init(.., rows, cols, ..)); other codecs see rows * cols elements. */
loco_status loco_codec_encode_cuda_shaped(const loco_codec *codec, struct loco_cuda_ctx *cuda,
                                          const float *dev_in, size_t rows, size_t cols,
                                          const loco_codec_ctx *ctx, uint8_t *dev_payload,
                                          uint8_t *out, size_t cap, size_t *out_len,
                                          loco_error *err);
loco_status loco_codec_encode_cuda(const loco_codec *codec, struct loco_cuda_ctx *cuda,
                                   const float *dev_in, size_t n, const loco_codec_ctx *ctx,
                                   uint8_t *dev_payload, uint8_t *out, size_t cap,
                                   size_t *out_len, loco_error *err);

#endif /* LOCO_COMPRESS_CODEC_H */
