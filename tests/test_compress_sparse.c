/* tests/test_compress_sparse.c — compress/: exact top-k (radix select vs the naive reference,
 * ties, the heavy-tie path), the top-k codec, bit packing and the index coders (round trips and
 * closed-form lengths), DGC, random-k, and hostile sparse messages. */
#include "test_compress_util.h"
#include "compress/bitpack.h"
#include "compress/dgc.h"
#include "compress/entropy.h"
#include "compress/topk.h"

/* ---- top-k selection ---------------------------------------------------------------------------- */

static void check_select(const float *x, size_t n, size_t k, size_t words, const char *what)
{
    uint32_t *idx = malloc((k ? k : 1) * 4), *ref = malloc((k ? k : 1) * 4);
    float *val = malloc((k ? k : 1) * 4), *rval = malloc((k ? k : 1) * 4);
    uint32_t *cand = words ? malloc(words * 4) : NULL;
    loco_error err = {0};
    cr_assert_eq(LOCO_OK, loco_topk_select(x, n, k, idx, val, cand, words, &err), "%s: %s",
                 what, err.msg);
    cr_assert_eq(LOCO_OK, loco_topk_select_naive(x, n, k, ref, rval));
    for (size_t j = 0; j < k; j++) {
        if (idx[j] != ref[j] || loco_f32_bits(val[j]) != loco_f32_bits(rval[j])) {
            cr_assert(0, "%s n=%zu k=%zu: entry %zu is %u, reference %u", what, n, k, j, idx[j],
                      ref[j]);
        }
    }
    free(idx);
    free(ref);
    free(val);
    free(rval);
    free(cand);
}

Test(topk, radix_select_equals_the_reference_at_odd_sizes)
{
    for (size_t s = 0; s < TEST_NSIZES; s++) {
        size_t n = test_sizes[s];
        float *x = test_floats(n);
        fill_normal(x, n, 100 + n);
        const double fractions[] = {0.0, 0.001, 0.01, 0.3, 1.0};
        for (int f = 0; f < 5; f++) {
            size_t k = (size_t)(fractions[f] * (double)n);
            k = 1 == f && 0 == k ? 1 : k;
            check_select(x, n, k, loco_topk_scratch_words(k, n), "candidates");
            check_select(x, n, k, 0, "all-pass");
        }
        free(x);
    }
}

Test(topk, ties_go_to_the_lowest_index)
{
    const size_t n = 300000; /* several partitions */
    float *x = test_floats(n);
    /* few distinct magnitudes, both signs, zeros and negative zeros */
    loco_rng r;
    loco_rng_init(&r, 5, 5);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = loco_rng_below(&r, 7);
        x[i] = (v & 1 ? -1.0f : 1.0f) * (float)(v / 2);
        if (0 == v / 2 && (v & 1)) {
            x[i] = -0.0f;
        }
    }
    const size_t ks[] = {1, 17, 1000, 42857, 100000, 200000, n - 1};
    for (int j = 0; j < 7; j++) {
        check_select(x, n, ks[j], loco_topk_scratch_words(ks[j], n), "ties, candidates");
        check_select(x, n, ks[j], 16, "ties, scratch too small");
    }
    /* all equal */
    for (size_t i = 0; i < n; i++) {
        x[i] = 2.5f;
    }
    check_select(x, n, 1234, loco_topk_scratch_words(1234, n), "all equal");
    free(x);
}

Test(topk, kept_set_is_exactly_k_and_dominates_the_rest)
{
    const size_t n = (1u << 20) + 3, k = n / 100;
    float *x = test_floats(n);
    fill_normal(x, n, 3);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TOPK);
    p.density = 0.01f;
    loco_codec *c = test_codec(p);
    size_t len;
    float *d = test_roundtrip(c, NULL, x, n, NULL, &len);
    size_t nonzero = 0;
    float min_kept = INFINITY, max_dropped = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (0.0f != d[i]) {
            nonzero++;
            cr_assert_eq(loco_f32_bits(d[i]), loco_f32_bits(x[i]), "kept values are exact");
            min_kept = fminf(min_kept, fabsf(x[i]));
        } else {
            max_dropped = fmaxf(max_dropped, fabsf(x[i]));
        }
    }
    cr_expect_eq(nonzero, k + 1, "ceil(0.01 n) kept");
    cr_expect_geq(min_kept, max_dropped);
    cr_expect_eq(len, 72 + 8 + 8 * (k + 1));
    free(d);
    loco_codec_free(c);
    free(x);
}

Test(topk, nonfinite_and_bad_arguments)
{
    float x[5] = {1, 2, NAN, 4, 5};
    uint32_t idx[5];
    float val[5];
    cr_expect_eq(LOCO_ERR_NONFINITE, loco_topk_select(x, 5, 2, idx, val, NULL, 0, NULL));
    x[2] = 3;
    cr_expect_eq(LOCO_ERR_INVALID_ARG, loco_topk_select(x, 5, 6, idx, val, NULL, 0, NULL));
    cr_expect_eq(LOCO_OK, loco_topk_select(x, 5, 0, idx, val, NULL, 0, NULL));
    cr_expect_eq(LOCO_OK, loco_topk_select(x, 5, 5, idx, val, NULL, 0, NULL));
    cr_expect_eq(idx[4], 4);
}

/* ---- bit packing --------------------------------------------------------------------------------- */

Test(bitpack, round_trip_and_length_formula)
{
    loco_rng r;
    loco_rng_init(&r, 1, 2);
    uint8_t codes[1003], back[1003], packed[1100];
    for (int bits = 1; bits <= 8; bits++) {
        const size_t counts[] = {0, 1, 7, 8, 9, 1003};
        for (int c = 0; c < 6; c++) {
            size_t count = counts[c];
            for (size_t i = 0; i < count; i++) {
                codes[i] = (uint8_t)(loco_rng_u32(&r) & ((1u << bits) - 1));
            }
            memset(packed, 0xEE, sizeof packed);
            loco_bitpack(codes, count, bits, packed);
            size_t bytes = loco_bitpack_bytes(count, bits);
            cr_expect_eq(bytes, (count * bits + 7) / 8);
            cr_expect_eq(packed[bytes], 0xEE, "wrote past ceil(count * bits / 8)");
            cr_expect(loco_bitpack_padding_zero(packed, count, bits));
            loco_bitunpack(packed, count, bits, back);
            cr_expect_arr_eq(codes, back, count, "bits %d count %zu", bits, count);
        }
    }
    /* stream bit order: code j at bits [j*b, (j+1)*b), LSB first */
    uint8_t three[3] = {5, 2, 7}, out[2] = {0};
    loco_bitpack(three, 3, 3, out);
    cr_expect_eq(out[0], (uint8_t)(5 | 2 << 3 | (7 & 3) << 6));
    cr_expect_eq(out[1], 7 >> 2);
}

/* ---- index coders -------------------------------------------------------------------------------- */

static void index_round_trip(const uint32_t *idx, size_t k, size_t n)
{
    uint8_t *buf = malloc(4 * k + n / 8 + 64);
    for (int m = 0; m < LOCO_INDEX_MODE_COUNT; m++) {
        int b = loco_rice_param(k, n);
        /* closed-form length */
        uint64_t bits = 0;
        for (size_t j = 0; j < k; j++) {
            uint64_t gap = idx[j] - (j ? idx[j - 1] : (uint32_t)-1);
            uint64_t L = 63 - __builtin_clzll(gap);
            bits += LOCO_INDEX_GAMMA == m ? 2 * L + 1 : ((gap - 1) >> b) + 1 + (uint64_t)b;
        }
        size_t want = LOCO_INDEX_RAW == m      ? 4 * k
                      : LOCO_INDEX_BITMAP == m ? (n + 7) / 8
                                               : (size_t)((bits + 7) / 8);
        size_t got = loco_index_bytes(idx, k, n, (loco_index_mode)m, b);
        cr_assert_eq(got, want, "mode %d: %zu bytes, formula %zu", m, got, want);
        size_t wrote = loco_index_encode(idx, k, n, (loco_index_mode)m, b, buf, got);
        cr_assert(wrote == got || 0 == k, "mode %d wrote %zu of %zu", m, wrote, got);
        uint32_t *back = malloc((k ? k : 1) * 4);
        loco_error err = {0};
        cr_assert_eq(LOCO_OK, loco_index_decode(buf, got, k, n, (loco_index_mode)m, b, back, &err),
                     "mode %d: %s", m, err.msg);
        cr_assert_arr_eq(back, idx, 4 * k, "mode %d", m);
        free(back);
    }
    loco_index_mode mode;
    int b;
    size_t bytes;
    loco_index_choose(idx, k, n, &mode, &b, &bytes);
    for (int m = 0; m < LOCO_INDEX_MODE_COUNT; m++) {
        cr_expect_leq(bytes, loco_index_bytes(idx, k, n, (loco_index_mode)m, b), "choose picks the shortest");
    }
    free(buf);
}

Test(index, coders_round_trip_and_match_closed_forms)
{
    /* single indices at the extremes */
    uint32_t one[1] = {0};
    index_round_trip(one, 1, 1);
    one[0] = 0x7FFFFFFEu;
    index_round_trip(one, 1, 0x7FFFFFFFu);
    one[0] = 1;
    index_round_trip(one, 1, 2);
    /* all gaps 1 */
    uint32_t run[1000];
    for (int i = 0; i < 1000; i++) {
        run[i] = (uint32_t)i;
    }
    index_round_trip(run, 1000, 1000);
    index_round_trip(run, 1000, 5000);
    /* random sparse sets at several densities */
    loco_rng r;
    loco_rng_init(&r, 3, 4);
    const double dens[] = {0.0005, 0.01, 0.1, 0.6};
    for (int d = 0; d < 4; d++) {
        size_t n = 100003, k = 0;
        uint32_t *idx = malloc(n * 4);
        for (size_t i = 0; i < n; i++) {
            if (loco_rng_uniform(&r) < dens[d]) {
                idx[k++] = (uint32_t)i;
            }
        }
        index_round_trip(idx, k, n);
        free(idx);
    }
    cr_expect_eq(loco_gamma_bits(1), 1);
    cr_expect_eq(loco_gamma_bits(2), 3);
    cr_expect_eq(loco_gamma_bits(0x7FFFFFFFu), 61);
    cr_expect_eq(loco_rice_bits(1, 3), 4);
    cr_expect_eq(loco_rice_bits(17, 3), 2 + 1 + 3);
}

static void expect_index_error(const uint8_t *buf, size_t len, size_t k, size_t n,
                               loco_index_mode m, int b, loco_status want, const char *what)
{
    loco_error err = {0};
    loco_status st = loco_index_decode(buf, len, k, n, m, b, NULL, &err);
    cr_expect_eq(st, want, "%s: got %s (%s)", what, loco_status_str(st), err.msg);
}

Test(index, hostile_streams_get_specific_errors)
{
    uint8_t buf[64];
    /* raw: non-monotone, zero gap, index >= n, short */
    uint32_t raw[3] = {5, 3, 9};
    memcpy(buf, raw, 12);
    expect_index_error(buf, 12, 3, 10, LOCO_INDEX_RAW, 0, LOCO_ERR_FORMAT, "non-monotone");
    raw[1] = 5;
    memcpy(buf, raw, 12);
    expect_index_error(buf, 12, 3, 10, LOCO_INDEX_RAW, 0, LOCO_ERR_FORMAT, "zero gap");
    raw[1] = 6;
    raw[2] = 10;
    memcpy(buf, raw, 12);
    expect_index_error(buf, 12, 3, 10, LOCO_INDEX_RAW, 0, LOCO_ERR_RANGE, "index >= n");
    expect_index_error(buf, 11, 3, 10, LOCO_INDEX_RAW, 0, LOCO_ERR_TRUNCATED, "short raw");
    expect_index_error(buf, 12, 2, 10, LOCO_INDEX_RAW, 0, LOCO_ERR_FORMAT, "extra raw bytes");
    expect_index_error(buf, 12, 11, 10, LOCO_INDEX_RAW, 0, LOCO_ERR_RANGE, "k > n");
    /* gamma: a run of zeros with no terminating one = bits past the end */
    memset(buf, 0, sizeof buf);
    expect_index_error(buf, 8, 1, 1000, LOCO_INDEX_GAMMA, 0, LOCO_ERR_FORMAT, "gamma run > 31");
    expect_index_error(buf, 2, 1, 1000, LOCO_INDEX_GAMMA, 0, LOCO_ERR_TRUNCATED, "gamma ends");
    /* gamma gap 4 (00 1 00) then index 3 >= n = 3 */
    buf[0] = 0x04; /* bits: 0,0,1,0,0 -> L = 2, low bits 00 -> gap 4 -> index 3 */
    expect_index_error(buf, 1, 1, 3, LOCO_INDEX_GAMMA, 0, LOCO_ERR_RANGE, "gamma index >= n");
    expect_index_error(buf, 1, 2, 100, LOCO_INDEX_GAMMA, 0, LOCO_ERR_TRUNCATED, "bits past end");
    expect_index_error(buf, 2, 1, 100, LOCO_INDEX_GAMMA, 0, LOCO_ERR_FORMAT, "trailing byte");
    buf[0] = 0x04 | 0x80;
    expect_index_error(buf, 1, 1, 100, LOCO_INDEX_GAMMA, 0, LOCO_ERR_FORMAT, "nonzero padding");
    /* rice: a unary quotient longer than n allows */
    memset(buf, 0, sizeof buf);
    expect_index_error(buf, 8, 1, 20, LOCO_INDEX_RICE, 2, LOCO_ERR_FORMAT, "rice run too long");
    expect_index_error(buf, 8, 1, 20, LOCO_INDEX_RICE, 40, LOCO_ERR_RANGE, "rice parameter 40");
    /* bitmap: more set bits than k, fewer, set padding */
    memset(buf, 0, sizeof buf);
    buf[0] = 0x0B;
    expect_index_error(buf, 2, 2, 16, LOCO_INDEX_BITMAP, 0, LOCO_ERR_FORMAT, "extra set bit");
    expect_index_error(buf, 2, 4, 16, LOCO_INDEX_BITMAP, 0, LOCO_ERR_FORMAT, "too few set bits");
    buf[1] = 0x80;
    expect_index_error(buf, 2, 4, 12, LOCO_INDEX_BITMAP, 0, LOCO_ERR_FORMAT, "bitmap padding");
    expect_index_error(buf, 1, 3, 12, LOCO_INDEX_BITMAP, 0, LOCO_ERR_TRUNCATED, "short bitmap");
    expect_index_error(buf, 2, 3, 12, (loco_index_mode)9, 0, LOCO_ERR_RANGE, "unknown mode");
}

/* ---- the top-k codec with the entropy stage ------------------------------------------------------ */

Test(topk, entropy_coded_messages_decode_to_the_same_vector_and_are_smaller)
{
    const size_t n = 1u << 18;
    float *x = test_floats(n);
    fill_normal(x, n, 71);
    const float dens[] = {0.001f, 0.01f, 0.2f, 0.7f};
    for (int d = 0; d < 4; d++) {
        loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TOPK);
        p.density = dens[d];
        loco_codec *plain = test_codec(p);
        p.entropy = true;
        loco_codec *coded = test_codec(p);
        size_t l1, l2;
        float *d1 = test_roundtrip(plain, NULL, x, n, NULL, &l1);
        float *d2 = test_roundtrip(coded, NULL, x, n, NULL, &l2);
        cr_expect_arr_eq(d1, d2, n * sizeof(float));
        size_t k = loco_codec_keep_count(dens[d], n);
        /* index bits: about log2(1/rho) + 2 per entry with Rice, at most a bitmap */
        double per = fmin(log2(1.0 / dens[d]) + 2.5, (double)n / k) / 8 + 4;
        cr_expect_leq((double)l2, 72 + 8 + per * k + 64, "density %g: %zu bytes", dens[d], l2);
        cr_expect_lt(l2, l1);
        free(d1);
        free(d2);
        loco_codec_free(plain);
        loco_codec_free(coded);
    }
    free(x);
}

Test(topk, hostile_sparse_messages)
{
    const size_t n = 4000;
    float *x = test_floats(n);
    fill_normal(x, n, 72);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_TOPK);
    loco_codec *c = test_codec(p);
    size_t len;
    uint8_t *good = test_encode(c, NULL, x, n, NULL, &len); /* k = 40: 8 + 160 + 160 */
    uint8_t *m = malloc(len);
#define MUTATE(stmt, want, what)                                       \
    do {                                                               \
        memcpy(m, good, len);                                          \
        stmt;                                                          \
        fix_crc(m, len);                                               \
        expect_reject(NULL, m, len, n, want, what);                    \
    } while (0)
    MUTATE(put_u64(m + 16, n + 1), LOCO_ERR_RANGE, "k > n");
    MUTATE(put_u64(m + 16, 39), LOCO_ERR_FORMAT, "k disagrees with the payload");
    MUTATE(put_u32(m + 72 + 8 + 4 * 5, (uint32_t)n), LOCO_ERR_RANGE, "index = n");
    MUTATE(put_u32(m + 72 + 8 + 4 * 5, 0), LOCO_ERR_FORMAT, "non-monotone index");
    MUTATE(m[72] = 1, LOCO_ERR_FORMAT, "coded mode without the entropy flag");
    MUTATE(m[72] = 7, LOCO_ERR_FORMAT, "unknown index mode");
    MUTATE(m[74] = 1, LOCO_ERR_FORMAT, "reserved byte");
    MUTATE(put_u32(m + 76, 1000), LOCO_ERR_TRUNCATED, "index section past the end");
    MUTATE(put_f32(m + len - 4, INFINITY), LOCO_ERR_NONFINITE, "Inf value");
    MUTATE(put_u32(m + 48, 7), LOCO_ERR_FORMAT, "bucket set on top-k");
#undef MUTATE
    /* expecting top-k at another density is a protocol error */
    p.density = 0.02f;
    loco_codec *other = test_codec(p);
    expect_reject(other, good, len, n, LOCO_ERR_PROTOCOL, "density mismatch");
    loco_codec_free(other);
    free(m);
    free(good);
    loco_codec_free(c);
    free(x);
}

/* ---- DGC ----------------------------------------------------------------------------------------- */

Test(dgc, warmup_schedule)
{
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_DGC);
    p.density = 0.001f;
    cr_expect_float_eq(loco_dgc_density(&p, 0), 0.001f, 1e-9);
    p.dgc_warmup_steps = 400;
    cr_expect_float_eq(loco_dgc_density(&p, 0), 0.25f, 1e-9);
    cr_expect_float_eq(loco_dgc_density(&p, 99), 0.25f, 1e-9);
    cr_expect_float_eq(loco_dgc_density(&p, 100), 0.0625f, 1e-9);
    cr_expect_float_eq(loco_dgc_density(&p, 200), 0.015625f, 1e-9);
    cr_expect_float_eq(loco_dgc_density(&p, 399), 0.00390625f, 1e-9);
    cr_expect_float_eq(loco_dgc_density(&p, 400), 0.001f, 1e-9);
    p.density = 0.1f;
    cr_expect_float_eq(loco_dgc_density(&p, 399), 0.1f, 1e-9, "never below the final density");
}

Test(dgc, momentum_correction_masking_and_conservation)
{
    const size_t n = 100003;
    float *g = test_floats(n), *sent = test_floats(n), *total = test_floats(n);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_DGC);
    p.density = 0.01f;
    p.dgc_momentum = 0.0f; /* with m = 0, v accumulates g exactly like EF */
    loco_codec *c = test_codec(p);
    loco_codec_state *s = NULL;
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&s, c, 1, n, NULL));
    loco_codec_buffer bufs[2];
    cr_assert_eq(2, loco_codec_state_buffers(s, bufs));
    cr_expect_str_eq(bufs[1].name, "dgc.velocity");
    size_t k = loco_codec_keep_count(p.density, n);
    for (int step = 0; step < 6; step++) {
        fill_normal(g, n, 500 + step);
        for (size_t i = 0; i < n; i++) {
            total[i] += g[i];
        }
        loco_codec_ctx ctx = {1, (uint64_t)step, 0, 0};
        size_t len;
        uint8_t *msg = test_encode(c, s, g, n, &ctx, &len);
        loco_codec_info info;
        cr_assert_eq(LOCO_OK, loco_codec_peek(msg, len, &info, NULL));
        cr_expect(info.k >= k - k / 5 && info.k <= k + 3 * k / 10 + 1,
                  "step %d: %llu kept, target %zu", step, (unsigned long long)info.k, k);
        float *dec = test_floats(n);
        cr_assert_eq(LOCO_OK, loco_codec_decode_add(c, msg, len, dec, n, 1.0f, NULL));
        for (size_t i = 0; i < n; i++) {
            if (0.0f != dec[i]) {
                cr_assert_eq(bufs[1].data[i], 0.0f, "velocity not masked at %zu", i);
                cr_assert_eq(bufs[0].data[i], 0.0f, "momentum not masked at %zu", i);
            }
            sent[i] += dec[i];
        }
        free(dec);
        free(msg);
    }
    /* everything fed in was either sent or is still in the velocity */
    for (size_t i = 0; i < n; i++) {
        cr_assert(fabsf(sent[i] + bufs[1].data[i] - total[i]) <= 1e-5f * (1 + fabsf(total[i])),
                  "mass lost at %zu", i);
    }
    loco_codec_state_free(s);
    loco_codec_free(c);
    free(g);
    free(sent);
    free(total);
}

Test(dgc, momentum_and_clipping)
{
    const size_t n = 1000;
    float g[1000];
    for (size_t i = 0; i < n; i++) {
        g[i] = 1.0f;
    }
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_DGC);
    p.density = 0.001f; /* one entry per step */
    p.dgc_clip_norm = 3.0f;
    loco_codec *c = test_codec(p);
    loco_codec_state *s = NULL;
    cr_assert_eq(LOCO_OK, loco_codec_state_init(&s, c, 1, n, NULL));
    loco_codec_buffer bufs[2];
    loco_codec_state_buffers(s, bufs);
    size_t len;
    free(test_encode(c, s, g, n, NULL, &len));
    free(test_encode(c, s, g, n, NULL, &len));
    /* ties keep the lowest index: step 1 sends element 0, step 2 element 1; the last element
     * was never sent: u = 0.9 c + c, v = c + 1.9 c with the clipped c = 3 / sqrt(1000) */
    float cg = 3.0f / sqrtf(1000.0f);
    size_t probe = n - 1;
    cr_expect_eq(bufs[1].data[0], cg, "element 0 restarted after masking");
    cr_expect_eq(bufs[1].data[1], 0.0f, "element 1 was just sent");
    cr_expect_float_eq(bufs[0].data[probe], 1.9f * cg, 1e-5);
    cr_expect_float_eq(bufs[1].data[probe], 2.9f * cg, 1e-5);
    loco_codec_state_reset(s);
    cr_expect_eq(bufs[1].data[probe], 0.0f);
    loco_codec_state_free(s);
    loco_codec_free(c);
}

/* ---- random-k ------------------------------------------------------------------------------------ */

Test(randk, every_rank_keeps_the_same_indices_and_no_index_is_sent)
{
    const size_t n = 100003;
    float *x = test_floats(n);
    fill_normal(x, n, 9);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_RANDK);
    loco_codec *c = test_codec(p);
    size_t k = loco_codec_keep_count(p.density, n);
    loco_codec_ctx a = {7, 3, 0, 5}, b = {7, 3, 6, 5};
    size_t la, lb;
    float *da = test_roundtrip(c, NULL, x, n, &a, &la);
    float *db = test_roundtrip(c, NULL, x, n, &b, &lb);
    cr_expect_eq(la, 72 + 4 * k, "values only");
    cr_expect_arr_eq(da, db, n * sizeof(float), "rank must not change the indices");
    size_t kept = 0;
    for (size_t j = 0; j < k; j++) { /* one per block, value exact */
        size_t s = j * n / k, e = (j + 1) * n / k, here = 0;
        for (size_t i = s; i < e; i++) {
            if (0.0f != da[i]) {
                here++;
                cr_assert_eq(da[i], x[i]);
            }
        }
        cr_assert_eq(here, 1, "block %zu holds %zu kept", j, here);
        kept += here;
    }
    cr_expect_eq(kept, k);
    /* another step draws other indices; the receiver's ctx must match the nonce */
    loco_codec_ctx other = {7, 4, 0, 5};
    size_t len;
    uint8_t *msg = test_encode(c, NULL, x, n, &a, &len);
    float *out = test_floats(n);
    cr_expect_eq(LOCO_ERR_PROTOCOL, loco_codec_decode_add(c, msg, len, out, n, 1.0f, &other));
    cr_expect_eq(LOCO_OK, loco_codec_decode_add(c, msg, len, out, n, 1.0f, &a));
    free(out);
    free(msg);
    free(da);
    free(db);
    loco_codec_free(c);
    free(x);
}

Test(randk, scaled_mode_is_unbiased, .timeout = 300)
{
    const size_t n = 2000;
    const int R = 4000;
    float *x = test_floats(n);
    fill_normal(x, n, 19);
    loco_codec_params p = loco_codec_params_default(LOCO_CODEC_RANDK);
    p.density = 0.1f; /* blocks of 10 */
    p.stochastic = true;
    loco_codec *c = test_codec(p);
    double *sum = calloc(n, sizeof *sum);
    float *dec = test_floats(n);
    for (int r = 0; r < R; r++) {
        loco_codec_ctx ctx = {3, (uint64_t)r, 0, 0};
        memset(dec, 0, n * sizeof *dec);
        size_t len;
        uint8_t *msg = test_encode(c, NULL, x, n, &ctx, &len);
        cr_assert_eq(LOCO_OK, loco_codec_decode_add(c, msg, len, dec, n, 1.0f, &ctx));
        free(msg);
        for (size_t i = 0; i < n; i++) {
            sum[i] += dec[i];
        }
    }
    double maxz = 0;
    for (size_t b = 0; b < n; b += 10) {
        double blk2 = 0; /* Var(10 x_I 1[I = i]) = x_i^2 (10 - 1) */
        for (size_t i = b; i < b + 10; i++) {
            double var = 9.0 * (double)x[i] * x[i];
            double z = (sum[i] / R - x[i]) / sqrt(var / R);
            maxz = fmax(maxz, fabs(z));
            blk2 += var;
        }
        (void)blk2;
    }
    cr_expect_lt(maxz, 5.5, "max |z| = %g", maxz);
    free(sum);
    free(dec);
    loco_codec_free(c);
    free(x);
}
