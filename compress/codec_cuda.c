/* compress/codec_cuda.c — loco_codec_encode_cuda (codec.h): the bucketed quantizers' payload
 * made on the GPU (cuda/cuda.h), copied to the host and framed by the same code as the CPU
 * encoder (loco_wire_init, loco_wire_frame), so a GPU worker and a CPU worker exchange the same
 * bytes. */
#include "codec_impl.h"
#include "dct.h"
#include "dct_impl.h"
#include "sparse_impl.h"

#include "cuda/cuda.h"

#include <stdlib.h>

/* Top-k: the selection on the GPU (cuda.h), the (index, value) list brought to the host and
 * written by the CPU's own sparse writer (entropy stage included). dev_payload holds idx (k),
 * val (k) and the selection's scratch. */
static loco_status encode_topk(const loco_codec *codec, struct loco_cuda_ctx *cuda,
                               const float *dev_in, size_t n, uint8_t *dev_payload, uint8_t *out,
                               size_t cap, size_t *out_len, loco_error *err)
{
    size_t k = loco_codec_keep_count(codec->params.density, n);
    uint32_t *dev_idx = (uint32_t *)dev_payload;
    float *dev_val = (float *)(dev_payload + 4 * k);
    void *scratch = dev_payload + 8 * k;
    LOCO_TRY(loco_cuda_topk_select(cuda, dev_in, n, k, dev_idx, dev_val, scratch, err));
    uint32_t *idx = malloc((k > 0 ? k : 1) * sizeof *idx);
    float *val = malloc((k > 0 ? k : 1) * sizeof *val);
    loco_status st = NULL == idx || NULL == val
                         ? loco_error_set(err, LOCO_ERR_NOMEM, "GPU top-k: out of memory")
                         : LOCO_OK;
    if (LOCO_OK == st && k > 0) {
        st = loco_cuda_download(cuda, idx, dev_idx, k * sizeof *idx, err);
    }
    if (LOCO_OK == st && k > 0) {
        st = loco_cuda_download(cuda, val, dev_val, k * sizeof *val, err);
    }
    size_t raw = 0;
    loco_wire w;
    loco_wire_init(codec, n, &w);
    w.k = k;
    if (LOCO_OK == st) {
        st = loco_sparse_write(idx, val, k, n, codec->params.entropy,
                               out + LOCO_WIRE_HEADER_BYTES, cap - LOCO_WIRE_HEADER_BYTES, &raw,
                               err);
    }
    free(idx);
    free(val);
    LOCO_TRY(st);
    return loco_wire_frame(codec, &w, out, raw, out_len, err);
}

/* Bytes of the two DCT bases (each up to 64 x 64 floats) after the payload, 16-aligned. */
#define DCT_BASES_BYTES (2 * DCT_MAX * DCT_MAX * sizeof(float) + 16)

/* DCT top-k: the bases made on the host (the CPU codec's own loco_dct_basis) and uploaded
 * behind the payload in dev_payload; the payload made on the GPU and copied down. */
static loco_status encode_dct(const loco_codec *codec, struct loco_cuda_ctx *cuda,
                              const float *dev_in, size_t rows, size_t cols, uint8_t *dev_payload,
                              uint8_t *out, size_t cap, size_t *out_len, loco_error *err)
{
    loco_dct_geom g;
    loco_dct_geom_init(&g, rows, cols, (size_t)codec->params.chunk_topk);
    if (cap < LOCO_WIRE_HEADER_BYTES + g.total) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "GPU encode (dct_topk): needs %zu bytes, capacity %zu (use "
                              "loco_codec_bound)",
                              LOCO_WIRE_HEADER_BYTES + g.total, cap);
    }
    float Br[DCT_MAX * DCT_MAX], Bc[DCT_MAX * DCT_MAX], BcT[DCT_MAX * DCT_MAX];
    loco_dct_basis(g.rc, Br);
    loco_dct_basis(g.cc, Bc);
    for (size_t v = 0; v < g.cc; v++) {
        for (size_t j = 0; j < g.cc; j++) {
            BcT[j * g.cc + v] = Bc[v * g.cc + j];
        }
    }
    float *dev_br = (float *)(dev_payload + ((g.total + 15) & ~(size_t)15));
    float *dev_bct = dev_br + DCT_MAX * DCT_MAX;
    LOCO_TRY(loco_cuda_upload(cuda, dev_br, Br, g.rc * g.rc * sizeof(float), err));
    LOCO_TRY(loco_cuda_upload(cuda, dev_bct, BcT, g.cc * g.cc * sizeof(float), err));
    loco_cuda_dct_params p = {rows, cols, g.rc, g.cc, g.kc, g.ib, dev_br, dev_bct};
    LOCO_TRY(loco_cuda_dct_topk_encode(cuda, &p, dev_in, dev_payload, err));
    if (g.total > 0) {
        LOCO_TRY(loco_cuda_download(cuda, out + LOCO_WIRE_HEADER_BYTES, dev_payload, g.total,
                                    err));
    }
    loco_wire w;
    loco_wire_init(codec, rows * cols, &w);
    w.k = g.K;
    w.param = (uint32_t)codec->params.chunk_topk;
    w.rows = (uint32_t)rows;
    w.cols = (uint32_t)cols;
    return loco_wire_frame(codec, &w, out, g.total, out_len, err);
}

size_t loco_codec_cuda_scratch_bytes(const loco_codec *codec, size_t n)
{
    size_t bound = loco_codec_bound(codec, n);
    if (LOCO_CODEC_DCT_TOPK == codec->params.id) {
        return bound + DCT_BASES_BYTES;
    }
    if (LOCO_CODEC_TOPK != codec->params.id) {
        return bound;
    }
    size_t topk = 8 * loco_codec_keep_count(codec->params.density, n) +
                  loco_cuda_topk_scratch_bytes(n);
    return topk > bound ? topk : bound;
}

/* Does encoding draw from ARS (stochastic rounding of a quantizer with codec.rng = ars)? The
 * GPU has no AES unit: those messages are made on the CPU. */
static bool draws_ars(const loco_codec_params *p)
{
    bool rounds = LOCO_CODEC_MAXMIN == p->id || LOCO_CODEC_QSGD == p->id ||
                  LOCO_CODEC_FP4 == p->id || LOCO_CODEC_TERNARY == p->id;
    return rounds && p->stochastic && LOCO_CODEC_RNG_ARS == p->rng;
}

bool loco_codec_cuda_encodes(const loco_codec_params *p, size_t n)
{
    if (!loco_cuda_built() || draws_ars(p)) {
        return false;
    }
    size_t bucket = 0 == p->bucket || (size_t)p->bucket > n ? n : (size_t)p->bucket;
    switch (p->id) {
    case LOCO_CODEC_MAXMIN:
    case LOCO_CODEC_QSGD:
    case LOCO_CODEC_FP4:
    case LOCO_CODEC_TERNARY:
    case LOCO_CODEC_SIGN: return bucket <= LOCO_CUDA_QUANT_MAX_BUCKET;
    case LOCO_CODEC_TOPK:
    case LOCO_CODEC_DCT_TOPK: return true;
    default: return false;
    }
}

loco_status loco_codec_encode_cuda(const loco_codec *codec, struct loco_cuda_ctx *cuda,
                                   const float *dev_in, size_t n, const loco_codec_ctx *ctx,
                                   uint8_t *dev_payload, uint8_t *out, size_t cap,
                                   size_t *out_len, loco_error *err)
{
    return loco_codec_encode_cuda_shaped(codec, cuda, dev_in, 1, n, ctx, dev_payload, out, cap,
                                         out_len, err);
}

loco_status loco_codec_encode_cuda_shaped(const loco_codec *codec, struct loco_cuda_ctx *cuda,
                                          const float *dev_in, size_t rows, size_t cols,
                                          const loco_codec_ctx *ctx, uint8_t *dev_payload,
                                          uint8_t *out, size_t cap, size_t *out_len,
                                          loco_error *err)
{
    size_t n = rows * cols;
    *out_len = 0;
    if (NULL == codec || NULL == cuda || NULL == out || NULL == dev_payload ||
        (NULL == dev_in && n > 0)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "GPU encode: NULL argument");
    }
    const loco_codec_params *p = &codec->params;
    if (n > LOCO_CODEC_MAX_N) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "GPU encode: %zu elements exceed one message (2^32-1)", n);
    }
    if (cap < LOCO_WIRE_HEADER_BYTES) {
        return loco_error_set(err, LOCO_ERR_RANGE, "GPU encode: capacity %zu < header %d", cap,
                              LOCO_WIRE_HEADER_BYTES);
    }
    if (draws_ars(p)) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "GPU encode (%s): codec.rng = ars draws on the CPU's AES unit; "
                              "encode on the CPU, or use codec.rng = philox on the GPU",
                              loco_codec_name(p->id));
    }
    if (LOCO_CODEC_TOPK == p->id) {
        return encode_topk(codec, cuda, dev_in, n, dev_payload, out, cap, out_len, err);
    }
    if (LOCO_CODEC_DCT_TOPK == p->id) {
        return encode_dct(codec, cuda, dev_in, rows, cols, dev_payload, out, cap, out_len, err);
    }
    loco_cuda_quant_params q;
    memset(&q, 0, sizeof q);
    switch (p->id) {
    case LOCO_CODEC_MAXMIN:
        q.kind = LOCO_CUDA_QUANT_MAXMIN;
        q.bits = p->bits;
        break;
    case LOCO_CODEC_QSGD:
        q.kind = LOCO_CUDA_QUANT_QSGD;
        q.bits = p->bits;
        break;
    case LOCO_CODEC_FP4:
        q.kind = LOCO_CUDA_QUANT_FP4;
        q.bits = 4;
        break;
    case LOCO_CODEC_TERNARY:
        q.kind = LOCO_CUDA_QUANT_TERNARY;
        q.bits = 0;
        break;
    case LOCO_CODEC_SIGN:
        q.kind = LOCO_CUDA_QUANT_SIGN;
        q.bits = 1;
        break;
    default:
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "GPU encode: codec %s runs on the CPU only (the GPU encodes "
                              "maxmin, qsgd, fp4, ternary, sign, topk and dct_topk)",
                              loco_codec_name(p->id));
    }
    static const loco_codec_ctx zero_ctx = {0, 0, 0, 0};
    ctx = NULL != ctx ? ctx : &zero_ctx;
    q.bucket = (size_t)p->bucket;
    q.stochastic = p->stochastic;
    q.clip_sigma = p->clip_sigma;
    q.seed = ctx->seed;
    q.stream = loco_codec_stream(ctx);
    size_t raw = loco_cuda_quant_payload_bytes(&q, n);
    if (cap < LOCO_WIRE_HEADER_BYTES + raw) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "GPU encode (%s): needs %zu bytes, capacity %zu (use "
                              "loco_codec_bound)",
                              loco_codec_name(p->id), LOCO_WIRE_HEADER_BYTES + raw, cap);
    }
    LOCO_TRY(loco_cuda_quant_encode(cuda, &q, dev_in, n, dev_payload, err));
    if (raw > 0) {
        LOCO_TRY(loco_cuda_download(cuda, out + LOCO_WIRE_HEADER_BYTES, dev_payload, raw, err));
    }
    loco_wire w;
    loco_wire_init(codec, n, &w);
    w.bits = (uint8_t)q.bits; /* what the family's CPU encoder writes (loco_quant_bits) */
    return loco_wire_frame(codec, &w, out, raw, out_len, err);
}
