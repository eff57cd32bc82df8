/* tests/test_compress_util.h — helpers shared by the compress/ test files: data generators,
 * one-call encode/decode, message surgery for hostile-input tests. */
#ifndef LOCO_TEST_COMPRESS_UTIL_H
#define LOCO_TEST_COMPRESS_UTIL_H

#include "base/base.h"
#include "compress/codec.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The odd sizes every codec is tried on: 1, 7, bucket - 1, bucket + 1 (bucket 512), 2^20 + 3. */
static const size_t test_sizes[] = {1, 7, 511, 513, (1u << 20) + 3};
#define TEST_NSIZES (sizeof test_sizes / sizeof test_sizes[0])

static inline void fill_normal(float *x, size_t n, uint64_t seed)
{
    loco_rng r;
    loco_rng_init(&r, seed, 77);
    for (size_t i = 0; i < n; i++) {
        x[i] = loco_rng_normal(&r);
    }
}

static inline float *test_floats(size_t n)
{
    float *x = calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(x);
    return x;
}

static inline loco_codec *test_codec(loco_codec_params p)
{
    loco_codec *c = NULL;
    loco_error err = {0};
    cr_assert_eq(LOCO_OK, loco_codec_init(&c, &p, &err), "codec init: %s", err.msg);
    return c;
}

/* Encode x with codec (state may be NULL) into a fresh buffer of bound size; returns it. */
static inline uint8_t *test_encode(const loco_codec *c, loco_codec_state *s, const float *x,
                                   size_t n, const loco_codec_ctx *ctx, size_t *len)
{
    size_t cap = loco_codec_bound(c, n);
    uint8_t *msg = malloc(cap);
    cr_assert_not_null(msg);
    loco_error err = {0};
    loco_status st = loco_codec_encode_ex(c, s, x, n, ctx, msg, cap, len, &err);
    cr_assert_eq(LOCO_OK, st, "encode %s n=%zu: %s", loco_codec_name(loco_codec_get_params(c)->id),
                 n, err.msg);
    cr_assert_leq(*len, cap, "message exceeds bound");
    return msg;
}

/* decoded = D(E(x)) (fresh zeroed buffer). */
static inline float *test_roundtrip(const loco_codec *c, loco_codec_state *s, const float *x,
                                    size_t n, const loco_codec_ctx *ctx, size_t *len)
{
    size_t l = 0;
    uint8_t *msg = test_encode(c, s, x, n, ctx, &l);
    float *dec = test_floats(n);
    loco_error err = {0};
    loco_status st = loco_codec_decode_add_ex(c, msg, l, dec, n, 1.0f, ctx, &err);
    cr_assert_eq(LOCO_OK, st, "decode: %s", err.msg);
    free(msg);
    if (NULL != len) {
        *len = l;
    }
    return dec;
}

/* Recompute a message's CRC after editing it (so tests reach the payload validation). */
static inline void fix_crc(uint8_t *msg, size_t len)
{
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, msg, 68);
    crc = crc32_z(crc, msg + 72, len - 72);
    uint32_t c = (uint32_t)crc;
    memcpy(msg + 68, &c, 4);
}

static inline void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void put_f32(uint8_t *p, float v) { memcpy(p, &v, 4); }

/* Decode must fail with `want` and leave out untouched. */
static inline void expect_reject(const loco_codec *expect, const uint8_t *msg, size_t len, size_t n,
                                 loco_status want, const char *what)
{
    float *out = test_floats(n);
    for (size_t i = 0; i < n; i++) {
        out[i] = (float)i;
    }
    loco_error err = {0};
    loco_status st = loco_codec_decode_add_ex(expect, msg, len, out, n, 1.0f, NULL, &err);
    cr_expect_eq(st, want, "%s: got %s (%s), want %s", what, loco_status_str(st), err.msg,
                 loco_status_str(want));
    cr_expect(LOCO_OK == st || '\0' != err.msg[0], "%s: no error message", what);
    for (size_t i = 0; i < n; i++) {
        if (out[i] != (float)i) {
            cr_expect(0, "%s: output touched at %zu", what, i);
            break;
        }
    }
    free(out);
}

#endif /* LOCO_TEST_COMPRESS_UTIL_H */
