/* tests/fuzz/fuzz_codec_quant.c — fuzz the dense and bucketed-quantizer decoders (none, fp16,
 * bf16, max-min, QSGD, FP4, ternary, sign) with valid-CRC messages (fuzz_codec_common.h). */
#include "fuzz_codec_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const loco_codec_id ids[] = {LOCO_CODEC_NONE,   LOCO_CODEC_FP16, LOCO_CODEC_BF16,
                                        LOCO_CODEC_MAXMIN, LOCO_CODEC_QSGD, LOCO_CODEC_FP4,
                                        LOCO_CODEC_TERNARY, LOCO_CODEC_SIGN};
    if (size > 0) {
        fuzz_decode_codec(ids[data[0] % 8], data, size);
    }
    return 0;
}
