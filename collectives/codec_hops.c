/* collectives/codec_hops.c — the compressed allreduce's entry points and its only link to
 * compress/codec.h.
 *
 * The ring (ring.c) encodes, decodes and bounds chunks through a loco_codec_hops table; this
 * file fills that table with loco_codec_bound / loco_codec_encode / loco_codec_decode_add. A
 * program that never calls loco_allreduce_codec does not pull this file, hence not the codec
 * library, into its link.
 */
#include "collectives/comm_impl.h"

static const loco_codec_hops g_codec_hops = {
    .bound = loco_codec_bound,
    .encode = loco_codec_encode,
    .decode_add = loco_codec_decode_add,
};

static loco_status codec_allreduce(loco_comm_t comm, const float *sendbuf, float *recvbuf,
                                   size_t count, loco_reduce_op op, const loco_codec *codec,
                                   const loco_codec_ctx *ctx, loco_request_t *req,
                                   loco_op_info *info)
{
    if (NULL == codec) {
        return loco_comm_allreduce_op(comm, sendbuf, recvbuf, count, LOCO_DTYPE_F32, op, NULL, 0,
                                      NULL, NULL, req, info);
    }
    uint32_t id = 1 + (uint32_t)loco_codec_get_params(codec)->id;
    return loco_comm_allreduce_op(comm, sendbuf, recvbuf, count, LOCO_DTYPE_F32, op, codec, id,
                                  ctx, &g_codec_hops, req, info);
}

loco_status loco_allreduce_codec(loco_comm_t comm, const float *sendbuf, float *recvbuf,
                                 size_t count, loco_reduce_op op, const loco_codec *codec,
                                 const loco_codec_ctx *ctx, loco_op_info *info)
{
    return codec_allreduce(comm, sendbuf, recvbuf, count, op, codec, ctx, NULL, info);
}

loco_status loco_iallreduce_codec(loco_comm_t comm, const float *sendbuf, float *recvbuf,
                                  size_t count, loco_reduce_op op, const loco_codec *codec,
                                  const loco_codec_ctx *ctx, loco_request_t *req)
{
    if (NULL == req) {
        return LOCO_ERR_INVALID_ARG;
    }
    return codec_allreduce(comm, sendbuf, recvbuf, count, op, codec, ctx, req, NULL);
}
