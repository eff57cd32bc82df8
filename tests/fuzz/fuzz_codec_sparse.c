/* tests/fuzz/fuzz_codec_sparse.c — fuzz the sparse decoders (top-k and DGC index/value payloads
 * with every index coding, random-k) with valid-CRC messages (fuzz_codec_common.h). */
#include "fuzz_codec_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const loco_codec_id ids[] = {LOCO_CODEC_TOPK, LOCO_CODEC_DGC, LOCO_CODEC_RANDK};
    if (size > 0) {
        fuzz_decode_codec(ids[data[0] % 3], data, size);
    }
    return 0;
}
