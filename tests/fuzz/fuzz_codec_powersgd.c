/* tests/fuzz/fuzz_codec_powersgd.c — fuzz the PowerSGD factor decoder with valid-CRC messages
 * (fuzz_codec_common.h). */
#include "fuzz_codec_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode_codec(LOCO_CODEC_POWERSGD, data, size);
    return 0;
}
