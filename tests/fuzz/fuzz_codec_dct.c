/* tests/fuzz/fuzz_codec_dct.c — fuzz the DCT top-k decoder and loco_dct_add_coefficients with
 * valid-CRC messages (fuzz_codec_common.h). */
#include "fuzz_codec_common.h"
#include "compress/dct.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_decode_codec(LOCO_CODEC_DCT_TOPK, data, size);
    size_t n = 0, len = 0;
    uint8_t *msg = fuzz_message(LOCO_CODEC_DCT_TOPK, data, size, &n, &len);
    if (NULL != msg) { /* the coefficient-domain reader, for a shape near the header's */
        size_t rows = fuzz_u32(data + 32) % 257;
        size_t cols = rows ? n / rows : 0;
        float *coef = calloc(rows * cols + 1, sizeof(float));
        float *count = calloc(rows * cols + 1, sizeof(float));
        if (NULL != coef && NULL != count) {
            loco_dct_add_coefficients(msg, len, rows, cols, 1.0f, coef, count, NULL);
        }
        free(coef);
        free(count);
        free(msg);
    }
    return 0;
}
