/* compress/randk.c — random-k with a shared seed: no indices on the wire.
 *
 * k = ceil(density * n) blocks tile [0, n): block j = [floor(j n / k), floor((j + 1) n / k)),
 * lengths differing by at most one. Block j keeps one element, chosen uniformly by the 32-bit
 * word j % 4 of loco_rng_block(nonce, LOCO_RANDK_STREAM, j / 4): index = start + (word * len)
 * >> 32. The nonce (header) is loco_rng_stream_id(seed, step, tensor) — the same on every rank,
 * so every worker keeps the same indices and messages sum like dense vectors (the ring can
 * decode, add and re-encode them). Payload: k fp32 values in block order.
 * With stochastic = true the decoder multiplies each value by its block length, giving an
 * unbiased estimate of the input (use that for one-hop exchanges; in a ring, keep it false and
 * scale once at the end, or the factor compounds per hop).
 */
#include "codec_impl.h"

#define LOCO_RANDK_STREAM 0x52414E444Bull /* "RANDK" */

/* Block j of k over [0, n). */
static inline void randk_block(size_t n, size_t k, size_t j, size_t *start, size_t *len)
{
    size_t s = (size_t)((uint64_t)j * n / k);
    size_t e = (size_t)((uint64_t)(j + 1) * n / k);
    *start = s;
    *len = e - s;
}

/* Kept index of every block j in [j0, j0 + count) into idx (count <= 4 aligned groups). */
static void randk_indices(uint64_t nonce, size_t n, size_t k, size_t j0, size_t count,
                          uint32_t *idx)
{
    uint32_t word[4];
    uint64_t have = UINT64_MAX;
    for (size_t j = j0; j < j0 + count; j++) {
        if (have != j / 4) {
            have = j / 4;
            loco_rng_block(nonce, LOCO_RANDK_STREAM, have, word);
        }
        size_t start, len;
        randk_block(n, k, j, &start, &len);
        idx[j - j0] = (uint32_t)(start + (size_t)(((uint64_t)word[j % 4] * len) >> 32));
    }
}

static size_t randk_payload_bound(const loco_codec_params *p, size_t n, size_t rows, size_t cols)
{
    return 4 * loco_codec_keep_count(p->density, n);
}

static loco_status randk_encode(const loco_codec *codec, loco_codec_state *state,
                                const float *in, size_t n, const loco_codec_ctx *ctx,
                                loco_wire *w, uint8_t *payload, size_t cap, size_t *len,
                                loco_error *err)
{
    size_t k = loco_codec_keep_count(codec->params.density, n);
    if (4 * k > cap) {
        return loco_error_set(err, LOCO_ERR_RANGE, "randk encode: needs %zu bytes, capacity %zu",
                              4 * k, cap);
    }
    if (!loco_all_finite(in, n)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "randk encode: input has NaN or Inf");
    }
    uint64_t nonce = loco_rng_stream_id(ctx->seed, ctx->step, ctx->tensor);
#pragma omp parallel for schedule(static) if (k >= 16384)
    for (size_t j0 = 0; j0 < k; j0 += 256) {
        size_t count = k - j0 < 256 ? k - j0 : 256;
        uint32_t idx[256];
        randk_indices(nonce, n, k, j0, count, idx);
        for (size_t j = 0; j < count; j++) {
            loco_put_f32(payload + 4 * (j0 + j), in[idx[j]]);
        }
    }
    w->k = k;
    w->nonce = nonce;
    *len = 4 * k;
    return LOCO_OK;
}

static loco_status randk_decode_add(const loco_wire *w, const uint8_t *payload, size_t len,
                                    float *out, size_t n, float scale, loco_error *err)
{
    if (0 != w->bits || 0 != w->bucket || 0 != w->param || 0 != w->rows || 0 != w->cols) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "randk message: header fields unused by this codec are not zero");
    }
    if (w->k > n || (0 == w->k && n > 0)) {
        return loco_error_set(err, LOCO_ERR_RANGE, "randk message: k = %llu for n = %zu",
                              (unsigned long long)w->k, n);
    }
    size_t k = (size_t)w->k;
    if (len != 4 * k) {
        return loco_error_set(err, len < 4 * k ? LOCO_ERR_TRUNCATED : LOCO_ERR_FORMAT,
                              "randk message: payload %zu bytes, exactly %zu expected", len,
                              4 * k);
    }
    for (size_t j = 0; j < k; j++) {
        if (!isfinite(loco_get_f32(payload + 4 * j))) {
            return loco_error_set(err, LOCO_ERR_NONFINITE, "randk message: value %zu is NaN/Inf",
                                  j);
        }
    }
    bool unbiased = 0 != (w->flags & LOCO_WIRE_FLAG_STOCHASTIC);
#pragma omp parallel for schedule(static) if (k >= 16384)
    for (size_t j0 = 0; j0 < k; j0 += 256) {
        size_t count = k - j0 < 256 ? k - j0 : 256;
        uint32_t idx[256];
        randk_indices(w->nonce, n, k, j0, count, idx);
        for (size_t j = 0; j < count; j++) {
            size_t start, blen;
            randk_block(n, k, j0 + j, &start, &blen);
            float v = loco_get_f32(payload + 4 * (j0 + j));
            out[idx[j]] += scale * (unbiased ? v * (float)blen : v);
        }
    }
    return LOCO_OK;
}

const loco_codec_ops loco_codec_ops_randk = {
    randk_payload_bound, randk_encode, randk_decode_add, NULL, false,
};
