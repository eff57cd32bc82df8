/* tests/fuzz/fuzz_codec_roundtrip.c — fuzz the encoders: arbitrary floats (NaN, Inf, huge,
 * subnormal, ties) and parameters; every encode either fails with a status or produces a
 * message within the bound that decodes (with the same codec expected). A decode failure of an
 * encoder's own message, or an overlong message, aborts.
 * Input: u8 codec, u8 bits (its top bit: ARS draws), u8 flags (stochastic, entropy), u8 density
 * byte, u16 bucket, u16 rows, then floats. */
#include "base/base.h"
#include "compress/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) {
        return 0;
    }
    loco_codec_params p = loco_codec_params_default((loco_codec_id)(data[0] % LOCO_CODEC_COUNT));
    p.bits = 1 + data[1] % 8;
    p.stochastic = data[2] & 1;
    p.entropy = (data[2] >> 1) & 1;
    p.rng = data[1] >> 7 ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
    p.density = (float)(1 + data[3]) / 256.0f;
    uint16_t bucket, rows;
    memcpy(&bucket, data + 4, 2);
    memcpy(&rows, data + 6, 2);
    p.bucket = bucket;
    p.chunk_topk = 1 + data[1] % 64;
    p.rank = 1 + data[1] % 5;
    p.dgc_warmup_steps = data[2] >> 2;
    if (LOCO_CODEC_QSGD == p.id && p.bits < 2) {
        p.bits = 2;
    }
    if (LOCO_CODEC_FP4 == p.id) {
        p.bits = 4;
    }
    size_t n = (size - 8) / 4;
    float *x = malloc((n ? n : 1) * sizeof(float));
    memcpy(x, data + 8, n * 4);
    loco_codec *codec = NULL;
    if (NULL == x || LOCO_OK != loco_codec_init(&codec, &p, NULL)) {
        free(x);
        return 0;
    }
    size_t r = rows % 16 + 1;
    if (0 == n || n % r != 0) {
        r = 1;
    }
    loco_codec_state *state = NULL;
    if (n > 0) {
        loco_codec_state_init(&state, codec, r, n / r, NULL);
    }
    size_t cap = loco_codec_bound(codec, n), len = 0;
    uint8_t *msg = malloc(cap);
    float *out = calloc(n ? n : 1, sizeof(float));
    loco_codec_ctx ctx = {1, data[3], 2, 3};
    for (int step = 0; step < 2 && NULL != msg && NULL != out; step++) {
        loco_codec_state *use = (step == 0 && !loco_codec_needs_state(codec)) ? NULL : state;
        if (LOCO_OK == loco_codec_encode(codec, use, x, n, &ctx, msg, cap, &len)) {
            loco_error err = {0};
            if (len > cap ||
                LOCO_OK != loco_codec_decode_add_ex(codec, msg, len, out, n, 1.0f, &ctx, &err)) {
                fprintf(stderr, "%s n=%zu: own message of %zu bytes (bound %zu) rejected: %s\n",
                        loco_codec_name(p.id), n, len, cap, err.msg);
                abort();
            }
        }
        ctx.step++;
    }
    free(out);
    free(msg);
    loco_codec_state_free(state);
    loco_codec_free(codec);
    free(x);
    return 0;
}
