/* tests/fuzz/fuzz_codec_wire.c — fuzz the message framing as a peer would send it: raw bytes,
 * CRC and all (magic, version, flags, lengths, CRC, codec id, deflate), decoded for the count
 * the header claims when that is small, and for a fixed count otherwise. */
#include "base/base.h"
#include "compress/codec.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    loco_codec_info info;
    size_t n = 1000;
    if (LOCO_OK == loco_codec_peek(data, size, &info, NULL) && info.n <= (1u << 16)) {
        n = (size_t)info.n;
    }
    float *out = calloc(n ? n : 1, sizeof(float));
    if (NULL != out) {
        loco_codec_decode_add(NULL, data, size, out, n, 1.0f, NULL);
        free(out);
    }
    return 0;
}
