/* tests/fuzz/fuzz_codec_common.h — shared by the codec fuzz targets: turn fuzzer bytes into a
 * message with a *valid* CRC around a fuzzer-chosen header and payload, so mutations reach the
 * codecs' payload validation instead of dying at the checksum.
 *
 * Input layout (little-endian):
 *   u8 codec selector (index into the target's codec list)   u8 bits   u8 flags   u8 unused
 *   u32 n (taken modulo 65537)   u64 k   u64 nonce   u32 bucket   u32 param   u32 rows
 *   u32 cols   u32 raw_len (used when the deflate flag is set)   then the payload bytes.
 */
#ifndef LOCO_FUZZ_CODEC_COMMON_H
#define LOCO_FUZZ_CODEC_COMMON_H

#include "base/base.h"
#include "compress/codec.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FUZZ_PREFIX 44
#define FUZZ_MAX_N 65536

static inline uint32_t fuzz_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t fuzz_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The message for `id` described by the fuzzer input (NULL if too short); *n gets its count. */
static inline uint8_t *fuzz_message(loco_codec_id id, const uint8_t *data, size_t size,
                                    size_t *n_out, size_t *len_out)
{
    if (size < FUZZ_PREFIX) {
        return NULL;
    }
    size_t n = fuzz_u32(data + 4) % (FUZZ_MAX_N + 1);
    size_t payload = size - FUZZ_PREFIX;
    uint8_t *msg = malloc(72 + payload);
    if (NULL == msg) {
        return NULL;
    }
    uint32_t magic = 0x43434F4Cu;
    memcpy(msg, &magic, 4);
    msg[4] = 1;
    msg[5] = (uint8_t)id;
    msg[6] = data[1];
    msg[7] = data[2] & 0x7; /* known flags only: the framing fuzzer covers the rest */
    uint64_t n64 = n, plen = payload, raw = (msg[7] & 4) ? fuzz_u32(data + 40) : payload;
    memcpy(msg + 8, &n64, 8);
    memcpy(msg + 16, data + 8, 8);  /* k */
    memcpy(msg + 24, data + 16, 8); /* nonce */
    memcpy(msg + 32, &plen, 8);
    memcpy(msg + 40, &raw, 8);
    memcpy(msg + 48, data + 24, 16); /* bucket, param, rows, cols */
    memset(msg + 64, 0, 4);
    memcpy(msg + 72, data + FUZZ_PREFIX, payload);
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, msg, 68);
    crc = crc32_z(crc, msg + 72, payload);
    uint32_t c32 = (uint32_t)crc;
    memcpy(msg + 68, &c32, 4);
    *n_out = n;
    *len_out = 72 + payload;
    return msg;
}

/* Build the message for `id` from the fuzzer input and decode it (with and without an expected
 * codec). Any status is fine; crashes, sanitizer reports and hangs are the findings. */
static inline void fuzz_decode_codec(loco_codec_id id, const uint8_t *data, size_t size)
{
    size_t n = 0, len = 0;
    uint8_t *msg = fuzz_message(id, data, size, &n, &len);
    if (NULL == msg) {
        return;
    }
    float *out = calloc(n ? n : 1, sizeof(float));
    if (NULL != out) {
        loco_codec_decode_add(NULL, msg, len, out, n, 1.0f, NULL);
        loco_codec_params p = loco_codec_params_default(id);
        loco_codec *expect = NULL;
        if (LOCO_OK == loco_codec_init(&expect, &p, NULL)) {
            loco_codec_ctx ctx = {0, 0, 0, 0};
            loco_codec_decode_add(expect, msg, len, out, n, -0.5f, &ctx);
            loco_codec_free(expect);
        }
        loco_codec_info info;
        loco_codec_peek(msg, len, &info, NULL);
        free(out);
    }
    free(msg);
}

#endif /* LOCO_FUZZ_CODEC_COMMON_H */
