/* tests/test_compress.c — compress/: registry and params, the wire header and its hostile-input
 * checks, dense codecs and the bucketed quantizers (max-min, QSGD, FP4, ternary, sign): odd
 * sizes, error bounds, thread-count independence, the deflate stage (unbiasedness:
 * test_compress_stats.c). */
#include "test_compress_util.h"
#include "compress/codec_impl.h" /* loco_codec_draws16 */
#include "compress/crc32.h"
#include "bench/bench.h"

#include <omp.h>
#include <unistd.h>

/* ---- registry, params, RNG layout ------------------------------------------------------------ */

Test(codec, names_parse_and_defaults_validate)
{
    for (int id = 0; id < LOCO_CODEC_COUNT; id++) {
        loco_codec_id back;
        cr_assert_eq(LOCO_OK, loco_codec_id_parse(loco_codec_name((loco_codec_id)id), &back, NULL));
        cr_expect_eq((int)back, id);
        loco_codec_params p = loco_codec_params_default((loco_codec_id)id);
        loco_error err = {0};
        cr_expect_eq(LOCO_OK, loco_codec_params_validate(&p, &err), "%s: %s",
                     loco_codec_name((loco_codec_id)id), err.msg);
    }
    loco_codec_id id;
    loco_error err = {0};
    cr_expect_eq(LOCO_ERR_CONFIG, loco_codec_id_parse("zstd", &id, &err));
    cr_expect(NULL != strstr(err.msg, "topk"), "message lists the codecs: %s", err.msg);
}

static void expect_config_error(loco_codec_params p, const char *field)
{
    loco_codec *c = NULL;
    loco_error err = {0};
    cr_expect_eq(LOCO_ERR_CONFIG, loco_codec_init(&c, &p, &err), "%s accepted", field);
    cr_expect(NULL != strstr(err.msg, field), "message '%s' does not name %s", err.msg, field);
    cr_expect_null(c);
}

Test(codec, invalid_params_name_the_field)
{
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
    p.bits = 9;
    expect_config_error(p, "bits");
    p.bits = 0;
    expect_config_error(p, "bits");
    p = loco_codec_params_default(LOCO_CODEC_QSGD);
    p.bits = 1;
    expect_config_error(p, "bits");
    p = loco_codec_params_default(LOCO_CODEC_FP4);
    p.bits = 3;
    expect_config_error(p, "bits");
    p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
    p.bucket = -1;
    expect_config_error(p, "bucket");
    p = loco_codec_params_default(LOCO_CODEC_TOPK);
    p.density = 0.0f;
    expect_config_error(p, "density");
    p.density = 1.5f;
    expect_config_error(p, "density");
    p.density = NAN;
    expect_config_error(p, "density");
    p = loco_codec_params_default(LOCO_CODEC_DCT_TOPK);
    p.chunk_topk = 0;
    expect_config_error(p, "chunk_topk");
    p = loco_codec_params_default(LOCO_CODEC_POWERSGD);
    p.rank = 0;
    expect_config_error(p, "rank");
    p = loco_codec_params_default(LOCO_CODEC_TERNARY);
    p.clip_sigma = -1.0f;
    expect_config_error(p, "clip_sigma");
    p = loco_codec_params_default(LOCO_CODEC_DGC);
    p.dgc_momentum = 1.0f;
    expect_config_error(p, "dgc_momentum");
    p = loco_codec_params_default(LOCO_CODEC_DGC);
    p.dgc_sample = 0.0f;
    expect_config_error(p, "dgc_sample");
    p = loco_codec_params_default(LOCO_CODEC_NONE);
    p.id = LOCO_CODEC_COUNT;
    expect_config_error(p, "codec.id");
}

Test(codec, crc32_equals_zlib_at_every_length_and_alignment)
{
    uint8_t *buf = malloc(5000);
    loco_rng r;
    loco_rng_init(&r, 4, 4);
    for (int i = 0; i < 5000; i++) {
        buf[i] = (uint8_t)loco_rng_u32(&r);
    }
    for (size_t len = 0; len < 4096; len += 1 + len / 64) {
        for (size_t off = 0; off < 3; off++) {
            uint32_t seed = (uint32_t)(len * 2654435761u);
            cr_assert_eq(loco_crc32(seed, buf + off, len),
                         (uint32_t)crc32_z(seed, buf + off, len), "len %zu off %zu", len, off);
        }
    }
    free(buf);
}

Test(codec, draws_follow_the_documented_layout_for_philox_and_ars)
{
    /* (first, len): unaligned heads and tails, runs long enough for the 256-draw Philox path and
     * the 16-block ARS path (and their remainders), one inside a single block, and one whose
     * block counters cross 2^32 (a carry into the counter's high word); streams with a zero and
     * a non-zero high word */
    static const size_t cases[][2] = {{13, 300}, {0, 4000},     {320, 1000}, {4001, 2600},
                                      {7, 1},    {5, 131},      {17, 5},     {8, 136},
                                      {((size_t)1 << 35) - 1000, 2000}};
    static const uint64_t streams[] = {0xABCDEFull, 0x0123456789ABCDEFull};
    uint64_t seed = 0x1234567887654321ull;
    static uint16_t r[4000];
    for (int ars = 0; ars < 2; ars++) {
        loco_codec_rng rng = ars ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
        for (size_t c = 0; c < 2 * sizeof cases / sizeof cases[0]; c++) {
            size_t first = cases[c / 2][0], len = cases[c / 2][1];
            uint64_t stream = streams[c % 2];
            loco_codec_draws16(rng, seed, stream, first, len, r);
            for (size_t j = 0; j < len; j++) {
                size_t i = first + j;
                uint32_t w[4];
                if (ars) {
                    loco_rng_ars_block(seed, stream, i / 8, w);
                } else {
                    loco_rng_block(seed, stream, i / 8, w);
                }
                uint16_t want = (uint16_t)(w[(i % 8) / 2] >> (16 * (i % 2)));
                cr_assert_eq(r[j], want, "%s: element %zu (first %zu)", ars ? "ars" : "philox", i,
                             first);
            }
        }
    }
}

Test(codec, finiteness_check_finds_a_nan_or_inf_anywhere)
{
    /* every position of runs 1..70 long (vector body and tail), NaN, +Inf and -Inf; finite
     * extremes (largest, smallest subnormal, -0) pass */
    static const uint32_t bad[] = {0x7FC00000u, 0x7F800001u, 0xFFC00000u, 0x7F800000u, 0xFF800000u};
    static const uint32_t good[] = {0x7F7FFFFFu, 0xFF7FFFFFu, 0x00000001u, 0x80000000u, 0x3F800000u};
    float x[70];
    for (size_t n = 1; n <= 70; n++) {
        for (size_t j = 0; j < n; j++) {
            memcpy(&x[j], &good[j % 5], 4);
        }
        cr_assert(loco_all_finite(x, n), "finite run of %zu", n);
        for (size_t at = 0; at < n; at++) {
            for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
                float keep = x[at];
                memcpy(&x[at], &bad[b], 4);
                cr_assert(!loco_all_finite(x, n), "0x%08x at %zu of %zu", bad[b], at, n);
                x[at] = keep;
            }
        }
    }
}

/* ---- every codec: bounds, statelessness, determinism across threads -------------------------- */

static const loco_codec_id stateless_ids[] = {
    LOCO_CODEC_NONE,    LOCO_CODEC_FP16, LOCO_CODEC_BF16, LOCO_CODEC_MAXMIN,
    LOCO_CODEC_QSGD,    LOCO_CODEC_FP4,  LOCO_CODEC_TERNARY, LOCO_CODEC_SIGN,
    LOCO_CODEC_TOPK,    LOCO_CODEC_RANDK, LOCO_CODEC_DCT_TOPK,
};
#define NSTATELESS (sizeof stateless_ids / sizeof stateless_ids[0])

Test(codec, stateless_messages_fit_the_bound_at_odd_sizes)
{
    loco_codec_ctx ctx = {5, 3, 1, 2};
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        size_t n = test_sizes[s];
        float *x = test_floats(n);
        fill_normal(x, n, n);
        for (size_t c = 0; c < NSTATELESS; c++) {
            for (int entropy = 0; entropy < 2; entropy++) {
                loco_codec_params p = loco_codec_params_default(stateless_ids[c]);
                p.entropy = entropy;
                loco_codec *codec = test_codec(p);
                size_t len;
                float *dec = test_roundtrip(codec, NULL, x, n, &ctx, &len);
                cr_expect_leq(len, loco_codec_bound(codec, n));
                free(dec);
                loco_codec_free(codec);
            }
        }
        free(x);
    }
}

Test(codec, stateful_codecs_refuse_a_null_state_with_a_message)
{
    const loco_codec_id ids[] = {LOCO_CODEC_DGC, LOCO_CODEC_POWERSGD};
    float x[64] = {1};
    uint8_t out[4096];
    for (int c = 0; c < 2; c++) {
        loco_codec *codec = test_codec(loco_codec_params_default(ids[c]));
        cr_expect(loco_codec_needs_state(codec));
        size_t len = 99;
        loco_error err = {0};
        cr_expect_eq(LOCO_ERR_INVALID_ARG,
                     loco_codec_encode_ex(codec, NULL, x, 64, NULL, out, sizeof out, &len, &err));
        cr_expect_eq(len, 0);
        cr_expect(NULL != strstr(err.msg, "loco_codec_state_init"), "%s", err.msg);
        loco_codec_free(codec);
    }
}

Test(codec, bytes_do_not_depend_on_the_thread_count)
{
    const size_t n = (1u << 20) + 3;
    float *x = test_floats(n);
    fill_normal(x, n, 9);
    loco_codec_ctx ctx = {11, 4, 2, 7};
    int saved = omp_get_max_threads();
    for (size_t c = 0; c < NSTATELESS; c++) {
        for (int variant = 0; variant < 3; variant++) {
            /* one bucket spanning many tiles, or many buckets; the latter with ARS draws too */
            bool whole = 1 == variant;
            loco_codec_params p = loco_codec_params_default(stateless_ids[c]);
            p.bucket = whole ? 0 : p.bucket;
            p.rng = 2 == variant ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
            loco_codec *codec = test_codec(p);
            size_t cap = loco_codec_bound(codec, n), len1 = 0, len3 = 0;
            uint8_t *m1 = malloc(cap), *m3 = malloc(cap);
            omp_set_num_threads(1);
            cr_assert_eq(LOCO_OK, loco_codec_encode(codec, NULL, x, n, &ctx, m1, cap, &len1));
            omp_set_num_threads(3);
            cr_assert_eq(LOCO_OK, loco_codec_encode(codec, NULL, x, n, &ctx, m3, cap, &len3));
            cr_expect_eq(len1, len3, "%s", loco_codec_name(p.id));
            cr_expect(0 == memcmp(m1, m3, len1), "%s bytes differ between 1 and 3 threads",
                      loco_codec_name(p.id));
            free(m1);
            free(m3);
            loco_codec_free(codec);
        }
    }
    omp_set_num_threads(saved);
    free(x);
}

/* The wire format and the decoded bits, pinned: every codec's message for a fixed input and
 * context, and the vector its decode_add produces, hashed (XXH64). The same hashes came out of
 * a -march=native (FMA) and a portable build, which compress/ guarantees by compiling without
 * FMA contraction (codec_impl.h). A change here changes what peers exchange: bump the wire
 * version and update the hashes together. */
Test(codec, golden_messages_and_decodes_are_stable)
{
    static const struct {
        loco_codec_id id;
        uint64_t msg, dec;
    } golden[] = {
        {LOCO_CODEC_NONE, 0x6647a11bb300901eull, 0xbbea3c10ccbd92bbull},
        {LOCO_CODEC_FP16, 0x79749dfddc45436aull, 0x5e9744696a91cbadull},
        {LOCO_CODEC_BF16, 0xfca08a4085adf4acull, 0x9a243ae521a14e17ull},
        {LOCO_CODEC_MAXMIN, 0x2c0a0769070d10f7ull, 0x34076f6d2139a133ull},
        {LOCO_CODEC_QSGD, 0x4330bedd6a52ad2eull, 0x5bd56aaae990cc12ull},
        {LOCO_CODEC_FP4, 0x54116863647bb0d1ull, 0x3499b9f638006ff6ull},
        {LOCO_CODEC_TERNARY, 0xa0fac7d6886084e1ull, 0xa995634eef077553ull},
        {LOCO_CODEC_SIGN, 0xf42e7416808813bcull, 0x07e1c8107603bf2eull},
        {LOCO_CODEC_TOPK, 0x86917eaec194bab0ull, 0xcaae5935cba0dbe2ull},
        {LOCO_CODEC_DGC, 0xc78d8af8653feb2aull, 0xcaae5935cba0dbe2ull},
        {LOCO_CODEC_RANDK, 0x13c307a219d05f8full, 0x99f3fe209a5ed89bull},
        {LOCO_CODEC_DCT_TOPK, 0x88b306bc0b813f13ull, 0x0b15463d519d5c2full},
        {LOCO_CODEC_POWERSGD, 0xcc3929a3b16b7157ull, 0x87d5627175124ebdull},
    };
    const size_t n = 10240;
    float *x = test_floats(n), *d = test_floats(n);
    loco_rng r;
    loco_rng_init(&r, 5, 5);
    for (size_t i = 0; i < n; i++) {
        x[i] = loco_rng_normal(&r) * 3.7f + 0.1f;
    }
    for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
        loco_codec *c = test_codec(loco_codec_params_default(golden[g].id));
        loco_codec_state *s = NULL;
        cr_assert_eq(LOCO_OK, loco_codec_state_init(&s, c, 80, 128, NULL));
        loco_codec_ctx ctx = {1, 2, 3, 4};
        size_t len;
        uint8_t *msg = test_encode(c, s, x, n, &ctx, &len);
        for (size_t i = 0; i < n; i++) {
            d[i] = 0.25f;
        }
        cr_assert_eq(LOCO_OK, loco_codec_decode_add(c, msg, len, d, n, 0.5f, &ctx));
        cr_expect_eq(loco_hash64(msg, len, 0), golden[g].msg, "%s message bytes changed",
                     loco_codec_name(golden[g].id));
        cr_expect_eq(loco_hash64(d, n * sizeof(float), 0), golden[g].dec,
                     "%s decoded bits changed", loco_codec_name(golden[g].id));
        free(msg);
        loco_codec_state_free(s);
        loco_codec_free(c);
    }
    free(x);
    free(d);
}

Test(codec, nonfinite_input_is_refused_by_every_codec)
{
    float x[600];
    fill_normal(x, 600, 3);
    for (int bad = 0; bad < 2; bad++) {
        x[517] = bad ? INFINITY : NAN;
        for (int id = 0; id < LOCO_CODEC_COUNT; id++) {
            loco_codec *codec = test_codec(loco_codec_params_default((loco_codec_id)id));
            loco_codec_state *s = NULL;
            cr_assert_eq(LOCO_OK, loco_codec_state_init(&s, codec, 20, 30, NULL));
            uint8_t *out = malloc(loco_codec_bound(codec, 600));
            size_t len = 1;
            loco_status st = loco_codec_encode(codec, s, x, 600, NULL, out,
                                               loco_codec_bound(codec, 600), &len);
            cr_expect_eq(st, LOCO_ERR_NONFINITE, "%s: %s", loco_codec_name((loco_codec_id)id),
                         loco_status_str(st));
            cr_expect_eq(len, 0);
            free(out);
            loco_codec_state_free(s);
            loco_codec_free(codec);
        }
    }
}

/* ---- dense ------------------------------------------------------------------------------------ */

Test(dense, none_is_exact_half_formats_round_to_nearest)
{
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        size_t n = test_sizes[s];
        float *x = test_floats(n);
        fill_normal(x, n, 1);
        for (int id = LOCO_CODEC_NONE; id <= LOCO_CODEC_BF16; id++) {
            loco_codec *c = test_codec(loco_codec_params_default((loco_codec_id)id));
            size_t len;
            float *d = test_roundtrip(c, NULL, x, n, NULL, &len);
            cr_expect_eq(len, 72 + n * (LOCO_CODEC_NONE == id ? 4 : 2));
            for (size_t i = 0; i < n; i++) {
                float want = LOCO_CODEC_NONE == id   ? x[i]
                             : LOCO_CODEC_FP16 == id ? loco_f16_to_f32(loco_f32_to_f16(x[i]))
                                                     : loco_bf16_to_f32(loco_f32_to_bf16(x[i]));
                if (d[i] != want) {
                    cr_assert(0, "%s n=%zu i=%zu: %g != %g", loco_codec_name((loco_codec_id)id),
                              n, i, d[i], want);
                }
            }
            free(d);
            loco_codec_free(c);
        }
        free(x);
    }
}

Test(dense, large_messages_stream_and_carry_the_right_crc, .timeout = 120)
{
    /* >= 8 MB of payload takes the streaming-store path and the per-range CRC: the message must
     * decode (its CRC is checked), give the reference values, and be the same bytes at 1 and 2
     * threads; n is odd so the tail tile and an unaligned end are exercised */
    const size_t n = ((size_t)1 << 22) + 3;
    float *x = test_floats(n), *d = test_floats(n);
    fill_normal(x, n, 21);
    int saved = omp_get_max_threads();
    for (int id = LOCO_CODEC_NONE; id <= LOCO_CODEC_BF16; id++) {
        loco_codec *c = test_codec(loco_codec_params_default((loco_codec_id)id));
        size_t cap = loco_codec_bound(c, n), len[2] = {0, 0};
        uint8_t *m[2] = {malloc(cap), malloc(cap)};
        cr_assert(NULL != m[0] && NULL != m[1]);
        for (int k = 0; k < 2; k++) {
            omp_set_num_threads(k + 1);
            cr_assert_eq(LOCO_OK, loco_codec_encode(c, NULL, x, n, NULL, m[k], cap, &len[k]));
        }
        omp_set_num_threads(saved);
        cr_assert_eq(len[0], len[1]);
        cr_assert(0 == memcmp(m[0], m[1], len[0]), "%s: bytes differ between 1 and 2 threads",
                  loco_codec_name((loco_codec_id)id));
        memset(d, 0, n * sizeof(float));
        cr_assert_eq(LOCO_OK, loco_codec_decode_add(c, m[0], len[0], d, n, 1.0f, NULL),
                     "%s: a streamed message does not decode", loco_codec_name((loco_codec_id)id));
        for (size_t i = 0; i < n; i++) {
            float want = LOCO_CODEC_NONE == id   ? x[i]
                         : LOCO_CODEC_FP16 == id ? loco_f16_to_f32(loco_f32_to_f16(x[i]))
                                                 : loco_bf16_to_f32(loco_f32_to_bf16(x[i]));
            if (d[i] != want) {
                cr_assert(0, "%s i=%zu: %g != %g", loco_codec_name((loco_codec_id)id), i,
                          (double)d[i], (double)want);
            }
        }
        free(m[0]);
        free(m[1]);
        loco_codec_free(c);
    }
    free(x);
    free(d);
}

Test(dense, fp16_overflow_is_a_range_error)
{
    float x[3] = {1.0f, 70000.0f, 2.0f};
    loco_codec *c = test_codec(loco_codec_params_default(LOCO_CODEC_FP16));
    uint8_t out[256];
    size_t len;
    loco_error err = {0};
    cr_expect_eq(LOCO_ERR_RANGE, loco_codec_encode_ex(c, NULL, x, 3, NULL, out, sizeof out, &len, &err));
    cr_expect(NULL != strstr(err.msg, "bf16"), "hint: %s", err.msg);
    loco_codec_free(c);
}

Test(dense, fp16_edges_round_as_base_half_on_the_vector_path)
{
    /* 24 values (three 8-wide conversions): the largest finite, just below the overflow
     * threshold, ties to even in the normal and subnormal ranges, the smallest subnormal and
     * half of it, the normal/subnormal boundary, signed zeros */
    float x[24] = {65504.0f, 65519.0f, -65519.0f, 1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f,
                   5.9604645e-8f, 2.9802322e-8f, 8.940697e-8f, 6.1035156e-5f, 6.0975552e-5f,
                   -0.0f, 0.0f, 1e-30f, -1e-30f, 3.14159265f, -2.71828f, 1000.5f, 0.33333334f,
                   -6.1035156e-5f, 4.4703484e-8f, 65503.0f, 1.0009766f, 2049.0f, -2051.0f};
    loco_codec *c = test_codec(loco_codec_params_default(LOCO_CODEC_FP16));
    size_t len;
    float *d = test_roundtrip(c, NULL, x, 24, NULL, &len);
    for (size_t i = 0; i < 24; i++) {
        float want = loco_f16_to_f32(loco_f32_to_f16(x[i]));
        cr_assert(d[i] == want, "x[%zu] = %a decoded %a, want %a", i, (double)x[i],
                  (double)d[i], (double)want); /* decoded into +0s: -0 reads back as +0 */
    }
    free(d);
    /* 65520 rounds to Inf in fp16: a range error from inside an 8-wide conversion */
    x[13] = 65520.0f;
    uint8_t out[256];
    loco_error err = {0};
    cr_expect_eq(LOCO_ERR_RANGE,
                 loco_codec_encode_ex(c, NULL, x, 24, NULL, out, sizeof out, &len, &err));
    x[13] = NAN; /* and a NaN is reported as such, not as an overflow */
    cr_expect_eq(LOCO_ERR_NONFINITE,
                 loco_codec_encode_ex(c, NULL, x, 24, NULL, out, sizeof out, &len, &err));
    loco_codec_free(c);
}

/* ---- quantizer error bounds -------------------------------------------------------------------- */

/* max |x| over x[start, start + len). */
static float absmax_of(const float *x, size_t start, size_t len)
{
    float m = 0.0f;
    for (size_t j = start; j < start + len; j++) {
        m = fmaxf(m, fabsf(x[j]));
    }
    return m;
}

/* The bucket (start, len) holding element i for bucket B over n. */
static void bucket_of(size_t i, size_t n, size_t B, size_t *start, size_t *len)
{
    if (0 == B || B > n) {
        B = n;
    }
    *start = i / B * B;
    *len = n - *start < B ? n - *start : B;
}

Test(maxmin, error_within_one_step_stochastic_half_step_nearest)
{
    loco_codec_ctx ctx = {1, 2, 3, 4};
    const int bits_list[] = {1, 2, 3, 4, 8};
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        size_t n = test_sizes[s];
        float *x = test_floats(n);
        fill_normal(x, n, 5 + n);
        for (int b = 0; b < 5; b++) {
            for (int stoch = 0; stoch < 2; stoch++) {
                loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
                p.bits = bits_list[b];
                p.stochastic = stoch;
                loco_codec *c = test_codec(p);
                size_t len;
                float *d = test_roundtrip(c, NULL, x, n, &ctx, &len);
                size_t start = SIZE_MAX, blen = 0;
                float unit = 0.0f;
                for (size_t i = 0; i < n; i++) {
                    size_t bs;
                    bucket_of(i, n, 512, &bs, &blen);
                    if (bs != start) {
                        start = bs;
                        float mn = x[bs], mx = x[bs];
                        for (size_t j = bs; j < bs + blen; j++) {
                            mn = fminf(mn, x[j]);
                            mx = fmaxf(mx, x[j]);
                        }
                        unit = (mx - mn) / (float)((1 << p.bits) - 1);
                    }
                    float bound = (stoch ? unit : unit / 2) * 1.0001f + 4e-7f * fabsf(x[i]) + 1e-7f;
                    if (!(fabsf(d[i] - x[i]) <= bound)) {
                        cr_assert(0, "bits %d stoch %d n=%zu i=%zu: |%g - %g| > %g", p.bits,
                                  stoch, n, i, d[i], x[i], bound);
                    }
                }
                /* codes are dense: scales (8 B) + ceil(len * bits / 8) per bucket */
                size_t want = 72, nb = (n + 511) / 512;
                for (size_t j = 0; j < nb; j++) {
                    size_t bl = n - 512 * j < 512 ? n - 512 * j : 512;
                    want += 8 + (bl * (size_t)p.bits + 7) / 8;
                }
                cr_expect_eq(len, want, "bits %d n %zu: %zu bytes, formula %zu", p.bits, n, len,
                             want);
                free(d);
                loco_codec_free(c);
            }
        }
        free(x);
    }
}

Test(maxmin, extreme_ranges_and_tiny_norms_stay_within_bounds)
{
    /* a range wider than fp32 (x - min overflows in fp32), a subnormal unit, a tiny QSGD norm */
    const float cases[3][6] = {
        {3e38f, -3e38f, 0.0f, 1.0f, -2.5e38f, 1e38f},
        {1e-44f, 2e-44f, 0.0f, 3e-44f, 1e-45f, 0.0f},
        {1e-38f, -5e-39f, 0.0f, 2e-39f, 0.0f, -1e-38f},
    };
    for (int c = 0; c < 3; c++) {
        for (int id = LOCO_CODEC_MAXMIN; id <= LOCO_CODEC_FP4; id++) {
            for (int stoch = 0; stoch < 2; stoch++) {
                loco_codec_params p = loco_codec_params_default((loco_codec_id)id);
                p.bits = 4;
                p.stochastic = stoch;
                loco_codec *codec = test_codec(p);
                if (LOCO_CODEC_QSGD == id && 0 == c) { /* the L2 norm itself exceeds fp32 */
                    uint8_t msg[256];
                    size_t len;
                    cr_expect_eq(LOCO_ERR_RANGE,
                                 loco_codec_encode(codec, NULL, cases[c], 6, NULL, msg, 256, &len));
                    loco_codec_free(codec);
                    continue;
                }
                float *d = test_roundtrip(codec, NULL, cases[c], 6, NULL, NULL);
                double lo = 0, hi = 0, l2 = 0;
                for (int i = 0; i < 6; i++) {
                    lo = fmin(lo, cases[c][i]);
                    hi = fmax(hi, cases[c][i]);
                    l2 += (double)cases[c][i] * cases[c][i];
                }
                for (int i = 0; i < 6; i++) {
                    cr_assert(isfinite(d[i]), "%s case %d: non-finite decode", loco_codec_name(p.id), c);
                    double step = LOCO_CODEC_MAXMIN == id ? (hi - lo) / 15 : (LOCO_CODEC_QSGD == id ? sqrt(l2) / 7 : fmax(-lo, hi));
                    cr_assert(fabs((double)d[i] - cases[c][i]) <= step * 1.001 + 1e-45,
                              "%s case %d i %d: %g for %g", loco_codec_name(p.id), c, i, d[i], cases[c][i]);
                }
                free(d);
                loco_codec_free(codec);
            }
        }
    }
}

Test(maxmin, constant_and_zero_buckets_decode_exactly)
{
    const size_t n = 1500;
    float *x = test_floats(n);
    for (size_t i = 0; i < n; i++) {
        x[i] = i < 700 ? 0.0f : 3.25f;
    }
    for (int bits = 1; bits <= 8; bits++) {
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
        p.bits = bits;
        p.bucket = 100;
        loco_codec *c = test_codec(p);
        float *d = test_roundtrip(c, NULL, x, n, NULL, NULL);
        cr_expect_arr_eq(d, x, n * sizeof(float), "bits %d", bits);
        free(d);
        loco_codec_free(c);
    }
    free(x);
}

/* A bucket whose minimum is zero with both -0 and +0 in it: min(-0, +0) depends on which the
 * reduction meets first (order, SIMD width, GPU lanes), so the encoder writes +0 whatever the
 * order: the same values in another order give the same message. */
Test(maxmin, signed_zero_minimum_gives_the_same_bytes)
{
    const size_t n = 64;
    float a[64], b[64];
    for (size_t i = 0; i < n; i++) {
        a[i] = i < 8 ? (i % 2 ? -0.0f : 0.0f) : 0.25f * (float)i;
        b[i] = i < 8 ? (i % 2 ? 0.0f : -0.0f) : 0.25f * (float)i;
    }
    for (int st = 0; st < 2; st++) {
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
        p.bucket = 16;
        p.stochastic = 1 == st;
        loco_codec *c = test_codec(p);
        size_t la = 0, lb = 0;
        uint8_t *ma = test_encode(c, NULL, a, n, NULL, &la);
        uint8_t *mb = test_encode(c, NULL, b, n, NULL, &lb);
        cr_assert_eq(la, lb);
        cr_assert_arr_eq(ma, mb, la, "%s: the order of -0 and +0 changed the message",
                         st ? "stochastic" : "nearest");
        free(ma);
        free(mb);
        loco_codec_free(c);
    }
}

Test(qsgd, values_on_the_grid_signs_kept_error_within_a_level)
{
    loco_codec_ctx ctx = {3, 1, 0, 0};
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        size_t n = test_sizes[s];
        float *x = test_floats(n);
        fill_normal(x, n, 17 + n);
        for (int bits = 2; bits <= 8; bits += 2) {
            loco_codec_params p = loco_codec_params_default(LOCO_CODEC_QSGD);
            p.bits = bits;
            loco_codec *c = test_codec(p);
            float *d = test_roundtrip(c, NULL, x, n, &ctx, NULL);
            double levels = (double)((1 << (bits - 1)) - 1);
            for (size_t bs = 0; bs < n; bs += 512) {
                size_t bl = n - bs < 512 ? n - bs : 512;
                double ss = 0;
                for (size_t j = bs; j < bs + bl; j++) {
                    ss += (double)x[j] * x[j];
                }
                double step = (double)(float)sqrt(ss) / levels;
                for (size_t j = bs; j < bs + bl; j++) {
                    double l = d[j] / step;
                    cr_assert(fabs(l - round(l)) < 1e-3 && fabs(l) <= levels + 1e-3,
                              "bits %d: %g is not on the grid of %g", bits, d[j], step);
                    cr_assert(d[j] == 0.0f || (d[j] > 0) == (x[j] > 0), "sign flipped at %zu", j);
                    cr_assert(fabs(d[j] - x[j]) <= step * 1.0001, "error beyond a level at %zu", j);
                }
            }
            free(d);
            loco_codec_free(c);
        }
        free(x);
    }
}

Test(fp4, powers_of_two_of_the_scale_and_neighbour_rounding)
{
    loco_codec_ctx ctx = {8, 1, 0, 0};
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        size_t n = test_sizes[s];
        float *x = test_floats(n);
        fill_normal(x, n, 23 + n);
        for (int stoch = 0; stoch < 2; stoch++) {
            loco_codec_params p = loco_codec_params_default(LOCO_CODEC_FP4);
            p.stochastic = stoch;
            loco_codec *c = test_codec(p);
            size_t len;
            float *d = test_roundtrip(c, NULL, x, n, &ctx, &len);
            for (size_t bs = 0; bs < n; bs += 512) {
                size_t bl = n - bs < 512 ? n - bs : 512;
                float scale = absmax_of(x, bs, bl);
                for (size_t j = bs; j < bs + bl; j++) {
                    float a = fabsf(x[j]) / scale, v = fabsf(d[j]) / scale;
                    cr_assert(d[j] == 0.0f || (d[j] > 0) == (x[j] > 0), "sign at %zu", j);
                    if (0.0f != v) {
                        int e;
                        float m = frexpf(v, &e);
                        cr_assert(m == 0.5f && e >= -5 && e <= 1, "%g is not 2^-6..1", v);
                    }
                    /* the decoded value is a neighbour of a on the grid {0, 2^-6, ..., 1} */
                    float lo = a < 1.0f / 64 ? 0.0f : exp2f(floorf(log2f(a)));
                    float hi = a < 1.0f / 64 ? 1.0f / 64 : fminf(2 * lo, 1.0f);
                    cr_assert(v >= lo * 0.9999f && v <= hi * 1.0001f,
                              "a=%g decoded %g outside [%g, %g]", a, v, lo, hi);
                    if (!stoch) {
                        float nearest = (a - lo) < (hi - a) ? lo : hi;
                        cr_assert(fabsf(v - nearest) <= 1e-6f * hi || fabsf(a - lo - (hi - a)) < 1e-6f,
                                  "nearest: a=%g got %g want %g", a, v, nearest);
                    }
                }
            }
            cr_expect_eq(len, 72 + 4 * ((n + 511) / 512) + (n / 512) * 256 + ((n % 512) + 1) / 2);
            free(d);
            loco_codec_free(c);
        }
        free(x);
    }
}

Test(ternary, values_in_minus_s_zero_s_with_clipping)
{
    loco_codec_ctx ctx = {2, 9, 1, 0};
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        size_t n = test_sizes[s];
        float *x = test_floats(n);
        fill_normal(x, n, 31 + n);
        for (int clip = 0; clip < 2; clip++) {
            loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TERNARY);
            p.clip_sigma = clip ? 2.5f : 0.0f;
            loco_codec *c = test_codec(p);
            size_t len;
            float *d = test_roundtrip(c, NULL, x, n, &ctx, &len);
            for (size_t bs = 0; bs < n; bs += 512) {
                size_t bl = n - bs < 512 ? n - bs : 512;
                float sv = absmax_of(d, bs, bl);
                for (size_t j = bs; j < bs + bl; j++) {
                    cr_assert(d[j] == 0.0f || fabsf(d[j]) == sv, "value %g not in {-s,0,s}", d[j]);
                    cr_assert(d[j] == 0.0f || (d[j] > 0) == (x[j] > 0), "sign at %zu", j);
                    if (sv > 0 && fabsf(x[j]) >= sv) {
                        cr_assert_eq(d[j], copysignf(sv, x[j]), "|x| >= s must map to sign*s");
                    }
                }
            }
            /* 5 trits per byte */
            size_t want = 72 + 4 * ((n + 511) / 512) + (n / 512) * 103 + ((n % 512) + 4) / 5;
            cr_expect_eq(len, want, "n=%zu: %zu bytes, formula %zu", n, len, want);
            free(d);
            loco_codec_free(c);
        }
        free(x);
    }
}

/* Ternary's clip scale, min(c * sigma, max |x|), formed as the library must: sum and sum of
 * squares over 8 interleaved double lanes (lane l adds elements l, l + 8, ... in order), lanes
 * added 0..7 (codec.h; the GPU codec sums the same way). lanes_reversed adds the lanes 7..0. */
static float ternary_clip_scale(const float *x, size_t len, float clip_sigma, bool lanes_reversed)
{
    double s[8] = {0}, q[8] = {0};
    float absmax = 0.0f;
    for (size_t i = 0; i < len; i++) {
        volatile double v = x[i], square = v * v; /* volatile: no contraction into an FMA */
        s[i % 8] += v;
        q[i % 8] += square;
        absmax = fabsf(x[i]) > absmax ? fabsf(x[i]) : absmax;
    }
    double sum = 0.0, sumsq = 0.0;
    for (int k = 0; k < 8; k++) {
        int l = lanes_reversed ? 7 - k : k;
        sum += s[l];
        sumsq += q[l];
    }
    volatile double mean = sum / (double)len, mean2 = mean * mean;
    double var = sumsq / (double)len - mean2;
    volatile double clip = (double)clip_sigma * sqrt(var > 0.0 ? var : 0.0);
    return clip < (double)absmax ? (float)clip : absmax;
}

/* Values 1000 + u, |u| <= 1e-3: the variance is a difference of two nearly equal doubles, so any
 * other summation order (pairs of buckets, vector lanes of any width, threads) shows in the fp32
 * scale. Sizes give pairs of full buckets, a lone full bucket and a short last one. */
Test(ternary, clip_scale_sums_in_the_documented_order)
{
    const size_t sizes[] = {4 * 512 + 77, 3 * 512};
    loco_codec_ctx ctx = {4, 1, 0, 0};
    for (size_t k = 0; k < 2; k++) {
        size_t n = sizes[k], buckets = (n + 511) / 512;
        float *x = test_floats(n);
        loco_rng r;
        loco_rng_init(&r, 77, k);
        for (size_t i = 0; i < n; i++) {
            x[i] = 1000.0f + (loco_rng_uniform(&r) * 2.0f - 1.0f) * 1e-3f;
        }
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TERNARY);
        cr_assert_eq(512, p.bucket);
        cr_assert(p.clip_sigma > 0.0f);
        loco_codec *c = test_codec(p);
        size_t len;
        uint8_t *msg = test_encode(c, NULL, x, n, &ctx, &len);
        int order_matters = 0;
        for (size_t b = 0; b < buckets; b++) {
            size_t start = 512 * b, bl = n - start < 512 ? n - start : 512;
            float want = ternary_clip_scale(x + start, bl, p.clip_sigma, false);
            float got;
            memcpy(&got, msg + 72 + 4 * b, 4); /* the scales follow the 72-byte header */
            cr_expect_eq(got, want, "n=%zu bucket %zu: scale %.9g, the documented order gives %.9g",
                         n, b, (double)got, (double)want);
            order_matters += want != ternary_clip_scale(x + start, bl, p.clip_sigma, true);
        }
        /* the test can fail: another lane order gives other scales on these inputs */
        cr_expect(order_matters > 0, "n=%zu: the inputs do not tell summation orders apart", n);
        free(msg);
        loco_codec_free(c);
        free(x);
    }
}

Test(sign, plus_minus_mean_magnitude)
{
    /* zeros of both signs encode as +s (only x < 0 is negative); one bucket per message, and
     * buckets of 13 (runs that start and end inside a byte's worth of codes) */
    static const int buckets[] = {0, 13};
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        for (int b = 0; b < 2; b++) {
            size_t n = test_sizes[s], bucket = buckets[b] ? (size_t)buckets[b] : n;
            float *x = test_floats(n);
            fill_normal(x, n, 41 + n);
            for (size_t i = 0; i < n; i++) {
                x[i] = i % 5 == 3 ? 0.0f : i % 7 == 4 ? -0.0f : x[i];
            }
            loco_codec_params p = loco_codec_params_default(LOCO_CODEC_SIGN);
            p.bucket = buckets[b];
            loco_codec *c = test_codec(p);
            size_t len;
            float *d = test_roundtrip(c, NULL, x, n, NULL, &len);
            size_t runs = 0;
            for (size_t b0 = 0; b0 < n; b0 += bucket) {
                size_t bl = n - b0 < bucket ? n - b0 : bucket;
                double l1 = 0;
                for (size_t i = b0; i < b0 + bl; i++) {
                    l1 += fabs(x[i]);
                }
                float scale = (float)(l1 / (double)bl);
                for (size_t i = b0; i < b0 + bl; i++) {
                    cr_assert(fabsf(fabsf(d[i]) - scale) <= 1e-6f * scale,
                              "bucket %zu: magnitude %g vs %g", bucket, d[i], scale);
                    cr_assert((d[i] < 0) == (x[i] < 0) && !signbit(d[i]) == !(x[i] < 0),
                              "bucket %zu: sign at %zu (x %g, decoded %g)", bucket, i,
                              (double)x[i], (double)d[i]);
                }
                runs += 4 + (bl + 7) / 8;
            }
            cr_expect_eq(len, 72 + runs);
            free(d);
            free(x);
            loco_codec_free(c);
        }
    }
}

/* ---- deflate stage ---------------------------------------------------------------------------- */

Test(entropy_stage, deflate_pays_on_skewed_codes_and_decodes_identically)
{
    const size_t n = 200000;
    float *x = test_floats(n);
    fill_normal(x, n, 5);
    x[0] = 40.0f; /* an outlier: most 8-bit max-min codes crowd into a few values */
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
    p.bits = 8;
    p.bucket = 0;
    p.stochastic = false;
    loco_codec *plain = test_codec(p);
    p.entropy = true;
    loco_codec *packed = test_codec(p);
    size_t l1, l2;
    float *d1 = test_roundtrip(plain, NULL, x, n, NULL, &l1);
    float *d2 = test_roundtrip(packed, NULL, x, n, NULL, &l2);
    cr_expect_lt(l2, l1 * 3 / 4, "deflate did not pay: %zu vs %zu", l2, l1);
    cr_expect_arr_eq(d1, d2, n * sizeof(float));
    loco_codec_info info;
    size_t cap = loco_codec_bound(packed, n);
    uint8_t *msg = malloc(cap);
    cr_assert_eq(LOCO_OK, loco_codec_encode(packed, NULL, x, n, NULL, msg, cap, &l2));
    cr_assert_eq(LOCO_OK, loco_codec_peek(msg, l2, &info, NULL));
    cr_expect(info.deflated);
    cr_expect_eq(info.n, n);
    /* a corrupted deflate stream (CRC fixed) is a format error, not a crash */
    msg[72 + 10] ^= 0x5A;
    fix_crc(msg, l2);
    expect_reject(packed, msg, l2, n, LOCO_ERR_FORMAT, "corrupt deflate");
    /* a raw length no codec can produce is refused before inflating */
    cr_assert_eq(LOCO_OK, loco_codec_encode(packed, NULL, x, n, NULL, msg, cap, &l2));
    put_u64(msg + 40, (uint64_t)n * 8 + 5000);
    fix_crc(msg, l2);
    expect_reject(packed, msg, l2, n, LOCO_ERR_RANGE, "inflate bomb");
    /* incompressible payloads (random signs) stay raw */
    loco_codec_params pn = loco_codec_params_default(LOCO_CODEC_SIGN);
    pn.entropy = true;
    loco_codec *none = test_codec(pn);
    size_t l3;
    uint8_t *m3 = test_encode(none, NULL, x, n, NULL, &l3);
    cr_assert_eq(LOCO_OK, loco_codec_peek(m3, l3, &info, NULL));
    cr_expect(!info.deflated);
    cr_expect_eq(l3, 72 + 4 + (n + 7) / 8);
    free(m3);
    free(msg);
    free(d1);
    free(d2);
    loco_codec_free(plain);
    loco_codec_free(packed);
    loco_codec_free(none);
    free(x);
}

/* ---- hostile messages ------------------------------------------------------------------------- */

Test(wire, every_framing_field_is_validated)
{
    const size_t n = 1000;
    float x[1000];
    fill_normal(x, n, 8);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_MAXMIN);
    loco_codec *c = test_codec(p);
    size_t len;
    uint8_t *good = test_encode(c, NULL, x, n, NULL, &len);
    uint8_t *m = malloc(len + 16);
    for (size_t cut = 0; cut < len; cut += (cut < 100 ? 1 : 37)) {
        memcpy(m, good, len);
        expect_reject(c, m, cut, n, cut < 72 ? LOCO_ERR_TRUNCATED : LOCO_ERR_TRUNCATED, "truncated");
    }
#define MUTATE(stmt, crc, want, what)      \
    do {                                   \
        memcpy(m, good, len);              \
        stmt;                              \
        if (crc) {                         \
            fix_crc(m, len);               \
        }                                  \
        expect_reject(c, m, len, n, want, what); \
    } while (0)
    MUTATE(m[0] ^= 1, 0, LOCO_ERR_FORMAT, "bad magic");
    MUTATE(m[4] = 2, 0, LOCO_ERR_VERSION, "version");
    MUTATE(m[100] ^= 0x10, 0, LOCO_ERR_CHECKSUM, "payload bit flip");
    MUTATE(m[68] ^= 1, 0, LOCO_ERR_CHECKSUM, "crc flip");
    MUTATE(m[5] = 200, 1, LOCO_ERR_UNSUPPORTED, "unknown codec");
    MUTATE(m[7] |= 0x80, 1, LOCO_ERR_FORMAT, "unknown flag");
    MUTATE(m[64] = 1, 1, LOCO_ERR_FORMAT, "reserved field");
    MUTATE(put_u64(m + 8, n + 1), 1, LOCO_ERR_RANGE, "count != n");
    MUTATE(put_u64(m + 8, 1ull << 40), 1, LOCO_ERR_RANGE, "huge count");
    MUTATE(m[6] = 9, 1, LOCO_ERR_PROTOCOL, "bits 9 (expect given)");
    MUTATE(m[6] = 5, 1, LOCO_ERR_PROTOCOL, "bits differ from expected");
    MUTATE(m[5] = LOCO_CODEC_QSGD, 1, LOCO_ERR_PROTOCOL, "codec differs from expected");
    MUTATE(put_u32(m + 48, 100), 1, LOCO_ERR_PROTOCOL, "bucket differs");
    MUTATE(put_u64(m + 16, 5), 1, LOCO_ERR_FORMAT, "k set for a dense codec");
    MUTATE(put_f32(m + 72, NAN), 1, LOCO_ERR_NONFINITE, "NaN min");
    MUTATE(put_f32(m + 76, INFINITY), 1, LOCO_ERR_NONFINITE, "Inf unit");
    MUTATE(put_f32(m + 76, -1.0f), 1, LOCO_ERR_RANGE, "negative unit");
    MUTATE(put_f32(m + 76, 3e37f), 1, LOCO_ERR_RANGE, "unit overflowing the range");
    MUTATE(put_u64(m + 32, len - 72 + 1), 0, LOCO_ERR_TRUNCATED, "payload length past the end");
    MUTATE(put_u64(m + 32, len - 72 - 1), 0, LOCO_ERR_FORMAT, "trailing byte");
    MUTATE(put_u64(m + 40, 5), 1, LOCO_ERR_FORMAT, "raw length without deflate");
#undef MUTATE
    /* decoding without `expect` also validates */
    memcpy(m, good, len);
    m[6] = 9;
    fix_crc(m, len);
    expect_reject(NULL, m, len, n, LOCO_ERR_RANGE, "bits 9, no expect");
    float out[1000] = {0};
    cr_expect_eq(LOCO_ERR_INVALID_ARG, loco_codec_decode_add(c, good, len, out, n, NAN, NULL));
    free(m);
    free(good);
    loco_codec_free(c);
}

Test(wire, codes_outside_the_alphabet_are_format_errors)
{
    const size_t n = 523;
    float x[523];
    fill_normal(x, n, 12);
    /* QSGD 2 bits: code 3 is invalid (levels -1, 0, +1 are codes 0..2) */
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_QSGD);
    p.bits = 2;
    loco_codec *c = test_codec(p);
    size_t len;
    uint8_t *m = test_encode(c, NULL, x, n, NULL, &len);
    m[72 + 8 + 3] = 0xFF; /* four codes of 3 in bucket 0 */
    fix_crc(m, len);
    expect_reject(c, m, len, n, LOCO_ERR_FORMAT, "qsgd code 3");
    free(m);
    loco_codec_free(c);
    /* FP4: code 8 (negative zero) is not canonical */
    c = test_codec(loco_codec_params_default(LOCO_CODEC_FP4));
    m = test_encode(c, NULL, x, n, NULL, &len);
    m[72 + 8 + 5] = 0x88;
    fix_crc(m, len);
    expect_reject(c, m, len, n, LOCO_ERR_FORMAT, "fp4 negative zero");
    /* padding bits above the last code must be zero: 523 = 512 + 11 codes, 11 * 4 bits */
    free(m);
    m = test_encode(c, NULL, x, n, NULL, &len);
    m[len - 1] |= 0xF0;
    fix_crc(m, len);
    expect_reject(c, m, len, n, LOCO_ERR_FORMAT, "fp4 padding");
    free(m);
    loco_codec_free(c);
    /* ternary: a byte >= 243 is not 5 trits; a partial group with high trits set */
    c = test_codec(loco_codec_params_default(LOCO_CODEC_TERNARY));
    m = test_encode(c, NULL, x, n, NULL, &len);
    m[72 + 8 + 1] = 250;
    fix_crc(m, len);
    expect_reject(c, m, len, n, LOCO_ERR_FORMAT, "ternary byte 250");
    free(m);
    m = test_encode(c, NULL, x, n, NULL, &len);
    m[len - 1] = 200; /* the last group holds 11 % 5 = 1 trit: only 0..2 are valid */
    fix_crc(m, len);
    expect_reject(c, m, len, n, LOCO_ERR_FORMAT, "ternary partial group");
    free(m);
    loco_codec_free(c);
}

Test(codec, zero_buckets_encode_alike_whatever_the_signs_of_their_zeros)
{
    /* min(-0, +0) and max(-0, +0) depend on the reduction order (SIMD width, GPU lanes): the
     * scales must not, so every arrangement of signed zeros gives the bytes of all +0. (The
     * AVX2 statistics keep the later of two equal zeros, lane by lane: without max-min's +0
     * minimum and +0 unit this test fails.) */
    const size_t n = 1000;
    float x[1000], zero[1000] = {0};
    loco_codec *c = test_codec(loco_codec_params_default(LOCO_CODEC_MAXMIN));
    size_t len0;
    uint8_t *want = test_encode(c, NULL, zero, n, NULL, &len0);
    for (int pattern = 0; pattern < 6; pattern++) {
        for (size_t i = 0; i < n; i++) {
            bool neg = 0 == pattern ? true : 1 == pattern ? i % 2 : 2 == pattern ? i % 33 == 5
                       : 3 == pattern ? i >= n / 2 : 4 == pattern ? i < 31 : i % 7 != 0;
            x[i] = neg ? -0.0f : 0.0f;
        }
        size_t len;
        uint8_t *m = test_encode(c, NULL, x, n, NULL, &len);
        cr_assert_eq(len, len0);
        cr_assert(0 == memcmp(m, want, len), "pattern %d of signed zeros changed the bytes",
                  pattern);
        free(m);
    }
    free(want);
    loco_codec_free(c);
}

/* Set code i of a b-bit run (b = 4 or 8) that starts at byte `run`. */
static void set_code(uint8_t *m, size_t run, size_t i, int bits, unsigned code)
{
    if (8 == bits) {
        m[run + i] = (uint8_t)code;
        return;
    }
    uint8_t *b = m + run + i / 2;
    *b = (uint8_t)(i % 2 ? (*b & 0x0F) | code << 4 : (*b & 0xF0) | code);
}

Test(wire, a_single_bad_code_is_found_anywhere_in_a_run)
{
    /* word-at-a-time checks of nibble and byte runs: a lone bad code in either nibble, inside
     * a whole 8-byte word and in the bytes after the last one (523 = 512 + 11 codes) */
    const size_t n = 523, at[] = {0, 1, 13, 126, 127, 511, 512, 517, 522};
    float x[523];
    fill_normal(x, n, 13);
    for (int kind = 0; kind < 3; kind++) {
        loco_codec_id id = 0 == kind ? LOCO_CODEC_FP4 : LOCO_CODEC_QSGD;
        loco_codec_params p = loco_codec_params_default(id);
        p.bits = 2 == kind ? 8 : 4;
        unsigned bad = 0 == kind ? 8u : (1u << p.bits) - 1u;
        loco_codec *c = test_codec(p);
        for (size_t a = 0; a < sizeof at / sizeof at[0]; a++) {
            size_t len;
            uint8_t *m = test_encode(c, NULL, x, n, NULL, &len);
            size_t bucket = at[a] / 512, run = 72 + 8 + bucket * 512 * (size_t)p.bits / 8;
            set_code(m, run, at[a] % 512, p.bits, bad);
            fix_crc(m, len);
            char what[64];
            snprintf(what, sizeof what, "%s bits %d code %u at %zu", loco_codec_name(p.id), p.bits,
                     bad, at[a]);
            expect_reject(c, m, len, n, LOCO_ERR_FORMAT, what);
            free(m);
        }
        loco_codec_free(c);
    }
}

Test(wire, dense_payload_nan_and_peek)
{
    float x[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    for (int id = LOCO_CODEC_NONE; id <= LOCO_CODEC_BF16; id++) {
        loco_codec *c = test_codec(loco_codec_params_default((loco_codec_id)id));
        size_t len;
        uint8_t *m = test_encode(c, NULL, x, 10, NULL, &len);
        loco_codec_info info;
        cr_assert_eq(LOCO_OK, loco_codec_peek(m, len, &info, NULL));
        cr_expect_eq((int)info.id, id);
        cr_expect_eq(info.n, 10);
        if (LOCO_CODEC_NONE == id) {
            put_f32(m + 72 + 12, NAN);
        } else {
            m[72 + 7] = LOCO_CODEC_FP16 == id ? 0x7C : 0x7F;
            m[72 + 6] = LOCO_CODEC_FP16 == id ? 0x01 : 0x81;
        }
        fix_crc(m, len);
        expect_reject(c, m, len, 10, LOCO_ERR_NONFINITE, "NaN value");
        expect_reject(c, m, len - 1, 10, LOCO_ERR_TRUNCATED, "short");
        free(m);
        loco_codec_free(c);
    }
}

/* ---- the benchmark runs and writes its records ------------------------------------------------- */

Test(bench, compress_bench_runs_on_a_small_size_and_writes_json)
{
    char path[] = "/tmp/loco_bench_compress_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    char *argv[] = {"compress", "--sizes", "8K", "--reps", "1", "--json", path, NULL};
    cr_assert_eq(0, loco_bench_compress(7, argv));
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(LOCO_OK, loco_file_read_all(path, 1 << 20, &text, &len, NULL));
    loco_json_doc doc;
    cr_assert_eq(LOCO_OK, loco_json_parse(&doc, text, len, NULL, NULL));
    int records = 0, with_baseline = 0;
    for (const loco_json_node *r = loco_json_child(&doc, loco_json_root(&doc)); NULL != r;
         r = loco_json_next(&doc, r)) {
        records++;
        with_baseline += NULL != loco_json_get(&doc, r, "baseline_value");
    }
    cr_expect_eq(records, 1 + 3 * LOCO_CODEC_COUNT + 2, "memcpy + 3 per codec + 2 top-k");
    cr_expect_eq(with_baseline, records);
    loco_json_free(&doc);
    free(text);
    unlink(path);
    char *bad[] = {"compress", "--codecs", "zip", NULL};
    cr_expect_eq(2, loco_bench_compress(3, bad));
    char *nearest[] = {"compress", "--sizes", "8K", "--reps", "1", "--codecs", "maxmin,ternary",
                       "--rounding", "nearest", NULL};
    cr_expect_eq(0, loco_bench_compress(9, nearest));
    char *bad_rounding[] = {"compress", "--rounding", "up", NULL};
    cr_expect_eq(2, loco_bench_compress(3, bad_rounding));
}
