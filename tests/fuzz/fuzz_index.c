/* tests/fuzz/fuzz_index.c — fuzz the index decoders (raw, Elias-gamma, Golomb-Rice, bitmap):
 * any stream either fails with a status or decodes to strictly increasing indices below n that
 * re-encode to the same bytes.
 * Input: u8 mode, u8 Rice parameter, u16 k, u32 n (modulo 2^20), then the stream. */
#include "base/base.h"
#include "compress/entropy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) {
        return 0;
    }
    loco_index_mode mode = (loco_index_mode)(data[0] % 5); /* 4 is an invalid mode */
    int rice_b = data[1] % 40;                              /* above 31 is invalid */
    uint16_t k16;
    uint32_t n32;
    memcpy(&k16, data + 2, 2);
    memcpy(&n32, data + 4, 4);
    size_t k = k16, n = n32 % (1u << 20);
    const uint8_t *stream = data + 8;
    size_t len = size - 8;
    uint32_t *idx = malloc((k ? k : 1) * sizeof *idx);
    if (NULL == idx) {
        return 0;
    }
    if (LOCO_OK == loco_index_decode(stream, len, k, n, mode, rice_b, idx, NULL)) {
        for (size_t j = 0; j < k; j++) {
            if (idx[j] >= n || (j > 0 && idx[j] <= idx[j - 1])) {
                abort(); /* the decoder let a bad index through */
            }
        }
        uint8_t *again = malloc(len ? len : 1);
        if (NULL != again) {
            size_t wrote = loco_index_encode(idx, k, n, mode, rice_b, again, len);
            if (wrote != len || (len > 0 && 0 != memcmp(again, stream, len))) {
                abort(); /* a valid stream must be the canonical encoding */
            }
            free(again);
        }
    }
    free(idx);
    return 0;
}
