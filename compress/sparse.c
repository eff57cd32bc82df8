/* compress/sparse.c — the (index, value) payload of top-k and DGC messages (sparse_impl.h). */
#include "sparse_impl.h"
#include "entropy.h"

loco_status loco_sparse_write(const uint32_t *idx, const float *val, size_t k, size_t n,
                              bool entropy, uint8_t *payload, size_t cap, size_t *len,
                              loco_error *err)
{
    loco_index_mode mode = LOCO_INDEX_RAW;
    int rice_b = 0;
    size_t index_bytes = 4 * k;
    if (entropy) {
        loco_index_choose(idx, k, n, &mode, &rice_b, &index_bytes);
    }
    size_t total = LOCO_SPARSE_HEADER_BYTES + index_bytes + 4 * k;
    if (total > cap) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "sparse encode: payload needs %zu bytes, capacity %zu", total, cap);
    }
    payload[0] = (uint8_t)mode;
    payload[1] = (uint8_t)(LOCO_INDEX_RICE == mode ? rice_b : 0);
    payload[2] = payload[3] = 0;
    loco_put_u32(payload + 4, (uint32_t)index_bytes);
    uint8_t *section = payload + LOCO_SPARSE_HEADER_BYTES;
    if (LOCO_INDEX_RICE != mode) {
        rice_b = 0;
    }
    if (index_bytes != loco_index_encode(idx, k, n, mode, rice_b, section, index_bytes) &&
        k > 0) {
        return loco_error_set(err, LOCO_ERR_INTERNAL, "sparse encode: index coder overflow");
    }
    if (k > 0) {
        memcpy(section + index_bytes, val, 4 * k);
    }
    *len = total;
    return LOCO_OK;
}

loco_status loco_sparse_decode_add(const loco_wire *w, const uint8_t *payload, size_t len,
                                   float *out, size_t n, float scale, loco_error *err)
{
    const char *name = loco_codec_name((loco_codec_id)w->codec);
    if (0 != w->bits || 0 != w->bucket || 0 != w->nonce || 0 != w->param || 0 != w->rows ||
        0 != w->cols) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s message: header fields unused by this codec are not zero",
                              name);
    }
    if (w->k > n) {
        return loco_error_set(err, LOCO_ERR_RANGE, "%s message: k = %llu exceeds n = %zu", name,
                              (unsigned long long)w->k, n);
    }
    size_t k = (size_t)w->k;
    if (len < LOCO_SPARSE_HEADER_BYTES) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED, "%s message: payload of %zu bytes", name,
                              len);
    }
    loco_index_mode mode = (loco_index_mode)payload[0];
    int rice_b = payload[1];
    size_t index_bytes = loco_get_u32(payload + 4);
    if (0 != payload[2] || 0 != payload[3] || mode >= LOCO_INDEX_MODE_COUNT ||
        (LOCO_INDEX_RICE != mode && 0 != rice_b) ||
        (0 == (w->flags & LOCO_WIRE_FLAG_ENTROPY) && LOCO_INDEX_RAW != mode)) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s message: bad index mode %u / parameter %d / reserved bytes",
                              name, payload[0], rice_b);
    }
    size_t need = LOCO_SPARSE_HEADER_BYTES + index_bytes + 4 * k;
    if (len != need) {
        return loco_error_set(err, len < need ? LOCO_ERR_TRUNCATED : LOCO_ERR_FORMAT,
                              "%s message: payload %zu bytes, index section %zu + %zu values "
                              "need %zu",
                              name, len, index_bytes, k, need);
    }
    const uint8_t *section = payload + LOCO_SPARSE_HEADER_BYTES;
    const uint8_t *values = section + index_bytes;
    for (size_t j = 0; j < k; j++) {
        if (!isfinite(loco_get_f32(values + 4 * j))) {
            return loco_error_set(err, LOCO_ERR_NONFINITE, "%s message: value %zu is NaN/Inf",
                                  name, j);
        }
    }
    /* Validate every index first, then apply: out stays untouched on any error. */
    LOCO_TRY(loco_index_decode(section, index_bytes, k, n, mode, rice_b, NULL, err));
    loco_index_reader r;
    LOCO_TRY(loco_index_reader_init(&r, section, index_bytes, k, n, mode, rice_b, err));
    for (size_t j = 0; j < k; j++) {
        uint32_t i;
        LOCO_TRY(loco_index_reader_next(&r, &i, err));
        out[i] += scale * loco_get_f32(values + 4 * j);
    }
    return LOCO_OK;
}
