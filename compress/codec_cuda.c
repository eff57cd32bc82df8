/* compress/codec_cuda.c — loco_codec_encode_cuda (codec.h): the bucketed quantizers' payload
 * made on the GPU (cuda/cuda.h), copied to the host and framed by the same code as the CPU
 * encoder (loco_wire_init, loco_wire_frame), so a GPU worker and a CPU worker exchange the same
 * bytes. */
#include "codec_impl.h"

#include "cuda/cuda.h"

loco_status loco_codec_encode_cuda(const loco_codec *codec, struct loco_cuda_ctx *cuda,
                                   const float *dev_in, size_t n, const loco_codec_ctx *ctx,
                                   uint8_t *dev_payload, uint8_t *out, size_t cap,
                                   size_t *out_len, loco_error *err)
{
    *out_len = 0;
    if (NULL == codec || NULL == cuda || NULL == out || NULL == dev_payload ||
        (NULL == dev_in && n > 0)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "GPU encode: NULL argument");
    }
    const loco_codec_params *p = &codec->params;
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
                              "maxmin, qsgd, fp4, ternary and sign)",
                              loco_codec_name(p->id));
    }
    if (n > LOCO_CODEC_MAX_N) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "GPU encode: %zu elements exceed one message (2^32-1)", n);
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
