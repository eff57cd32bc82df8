/* compress/entropy.c — index coders (raw, Elias-gamma, Golomb-Rice, bitmap) and the deflate
 * stage (see entropy.h for the formats). */
#include "entropy.h"
#include "bitpack.h"
#include "codec_impl.h"

#include <stdlib.h>
#include <zlib.h>

/* ---- index coding ------------------------------------------------------------------------- */

int loco_rice_param(size_t k, size_t n)
{
    if (0 == k || n <= k) {
        return 0;
    }
    double m = 0.6931471805599453 * (double)n / (double)k;
    int b = 0;
    while (b < 31 && (double)(1ull << (b + 1)) <= m) {
        b++;
    }
    return b;
}

size_t loco_index_bytes(const uint32_t *idx, size_t k, size_t n, loco_index_mode mode,
                        int rice_b)
{
    switch (mode) {
    case LOCO_INDEX_RAW: return 4 * k;
    case LOCO_INDEX_BITMAP: return (n + 7) / 8;
    case LOCO_INDEX_GAMMA:
    case LOCO_INDEX_RICE: {
        uint64_t bits = 0;
        int64_t prev = -1;
        for (size_t j = 0; j < k; j++) {
            uint64_t gap = (uint64_t)((int64_t)idx[j] - prev);
            bits += LOCO_INDEX_GAMMA == mode ? loco_gamma_bits(gap) : loco_rice_bits(gap, rice_b);
            prev = idx[j];
        }
        return (size_t)((bits + 7) / 8);
    }
    default: return SIZE_MAX;
    }
}

void loco_index_choose(const uint32_t *idx, size_t k, size_t n, loco_index_mode *mode,
                       int *rice_b, size_t *bytes)
{
    *rice_b = loco_rice_param(k, n);
    *mode = LOCO_INDEX_RAW;
    *bytes = loco_index_bytes(idx, k, n, LOCO_INDEX_RAW, 0);
    for (int m = LOCO_INDEX_GAMMA; m < LOCO_INDEX_MODE_COUNT; m++) {
        size_t b = loco_index_bytes(idx, k, n, (loco_index_mode)m, *rice_b);
        if (b < *bytes) {
            *bytes = b;
            *mode = (loco_index_mode)m;
        }
    }
}

size_t loco_index_encode(const uint32_t *idx, size_t k, size_t n, loco_index_mode mode,
                         int rice_b, uint8_t *out, size_t cap)
{
    if (loco_index_bytes(idx, k, n, mode, rice_b) > cap) {
        return 0;
    }
    switch (mode) {
    case LOCO_INDEX_RAW:
        for (size_t j = 0; j < k; j++) {
            loco_put_u32(out + 4 * j, idx[j]);
        }
        return 4 * k;
    case LOCO_INDEX_BITMAP: {
        size_t bytes = (n + 7) / 8;
        memset(out, 0, bytes);
        for (size_t j = 0; j < k; j++) {
            out[idx[j] / 8] |= (uint8_t)(1u << (idx[j] % 8));
        }
        return bytes;
    }
    case LOCO_INDEX_GAMMA:
    case LOCO_INDEX_RICE: {
        loco_bitwriter w;
        loco_bitwriter_init(&w, out, cap);
        int64_t prev = -1;
        for (size_t j = 0; j < k; j++) {
            uint64_t gap = (uint64_t)((int64_t)idx[j] - prev);
            prev = idx[j];
            if (LOCO_INDEX_GAMMA == mode) {
                int l = 63 - __builtin_clzll(gap);
                loco_bitwriter_zeros(&w, (uint64_t)l);
                loco_bitwriter_put(&w, 1, 1);
                loco_bitwriter_put(&w, gap, l);
            } else {
                loco_bitwriter_zeros(&w, (gap - 1) >> rice_b);
                loco_bitwriter_put(&w, 1, 1);
                loco_bitwriter_put(&w, gap - 1, rice_b);
            }
        }
        size_t bytes = loco_bitwriter_finish(&w);
        return w.overflow ? 0 : bytes;
    }
    default: return 0;
    }
}

loco_status loco_index_reader_init(loco_index_reader *r, const uint8_t *in, size_t len,
                                   size_t k, size_t n, loco_index_mode mode, int rice_b,
                                   loco_error *err)
{
    memset(r, 0, sizeof *r);
    if (k > n) {
        return loco_error_set(err, LOCO_ERR_RANGE, "index coding: %zu indices of only %zu", k, n);
    }
    if ((int)mode < 0 || mode >= LOCO_INDEX_MODE_COUNT) {
        return loco_error_set(err, LOCO_ERR_RANGE, "index coding: unknown mode %d", (int)mode);
    }
    if (rice_b < 0 || rice_b > 31) {
        return loco_error_set(err, LOCO_ERR_RANGE, "index coding: Rice parameter %d (0..31)",
                              rice_b);
    }
    if (LOCO_INDEX_RAW == mode && len / 4 < k) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "index coding: %zu bytes cannot hold %zu raw indices", len, k);
    }
    if (LOCO_INDEX_BITMAP == mode && len < (n + 7) / 8) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "index coding: %zu bytes cannot hold a %zu-bit bitmap", len, n);
    }
    r->in = in;
    r->len = len;
    r->k = k;
    r->n = n;
    r->mode = mode;
    r->rice_b = rice_b;
    r->prev = -1;
    return LOCO_OK;
}

/* Next set bit of the bitmap at or after r->pos, or n. */
static uint64_t bitmap_next(const loco_index_reader *r, uint64_t pos)
{
    while (pos < r->n) {
        if (0 == pos % 64 && pos + 64 <= r->n) {
            uint64_t word;
            memcpy(&word, r->in + pos / 8, 8);
            if (0 == word) {
                pos += 64;
                continue;
            }
            return pos + (uint64_t)__builtin_ctzll(word);
        }
        if (r->in[pos / 8] & (1u << (pos % 8))) {
            return pos;
        }
        pos++;
    }
    return r->n;
}

loco_status loco_index_reader_next(loco_index_reader *r, uint32_t *index, loco_error *err)
{
    if (r->emitted >= r->k) {
        return loco_error_set(err, LOCO_ERR_INTERNAL, "index coding: read past k");
    }
    uint64_t value = 0;
    switch (r->mode) {
    case LOCO_INDEX_RAW: {
        value = loco_get_u32(r->in + 4 * r->emitted);
        if ((int64_t)value <= r->prev) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "index coding: index %llu after %lld is not increasing "
                                  "(zero or negative gap)",
                                  (unsigned long long)value, (long long)r->prev);
        }
        break;
    }
    case LOCO_INDEX_BITMAP: {
        uint64_t at = bitmap_next(r, r->pos);
        if (at >= r->n) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "index coding: bitmap has %zu set bits, header says %zu",
                                  r->emitted, r->k);
        }
        value = at;
        r->pos = at + 1;
        break;
    }
    case LOCO_INDEX_GAMMA:
    case LOCO_INDEX_RICE: {
        loco_bitreader br = {r->in, r->len, r->pos, (uint64_t)r->len * 8};
        uint64_t zeros = 0, low = 0, gap = 0;
        bool gamma = LOCO_INDEX_GAMMA == r->mode;
        uint64_t max_zeros = gamma ? 31 : ((uint64_t)r->n >> r->rice_b) + 1;
        loco_status st = loco_bitreader_unary(&br, max_zeros, &zeros);
        if (LOCO_OK == st) {
            st = loco_bitreader_get(&br, gamma ? (int)zeros : r->rice_b, &low);
        }
        if (LOCO_ERR_TRUNCATED == st) {
            return loco_error_set(err, st, "index coding: bit stream ends after %zu of %zu gaps",
                                  r->emitted, r->k);
        }
        if (LOCO_OK != st) {
            return loco_error_set(err, st, "index coding: unary run too long at gap %zu",
                                  r->emitted);
        }
        gap = gamma ? ((1ull << zeros) | low) : ((zeros << r->rice_b) + low + 1);
        r->pos = br.pos;
        value = (uint64_t)(r->prev + (int64_t)gap);
        break;
    }
    default: return loco_error_set(err, LOCO_ERR_RANGE, "index coding: bad mode");
    }
    if (value >= r->n) {
        return loco_error_set(err, LOCO_ERR_RANGE, "index coding: index %llu >= n = %zu",
                              (unsigned long long)value, r->n);
    }
    r->prev = (int64_t)value;
    r->emitted++;
    *index = (uint32_t)value;
    return LOCO_OK;
}

loco_status loco_index_reader_finish(const loco_index_reader *r, loco_error *err)
{
    switch (r->mode) {
    case LOCO_INDEX_RAW:
        if (r->len != 4 * r->k) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "index coding: %zu bytes for %zu raw indices", r->len, r->k);
        }
        return LOCO_OK;
    case LOCO_INDEX_BITMAP:
        if (r->len != (r->n + 7) / 8 || bitmap_next(r, r->pos) < r->n ||
            !loco_bitpack_padding_zero(r->in, r->n, 1)) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "index coding: bitmap has more than %zu set bits, padding or "
                                  "extra bytes",
                                  r->k);
        }
        return LOCO_OK;
    default: {
        size_t used = (size_t)((r->pos + 7) / 8);
        bool pad_ok = 0 == r->pos % 8 || 0 == (r->in[r->pos / 8] >> (r->pos % 8));
        if (used != r->len || !pad_ok) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "index coding: %zu bytes declared, %zu used (or nonzero "
                                  "padding)",
                                  r->len, used);
        }
        return LOCO_OK;
    }
    }
}

loco_status loco_index_decode(const uint8_t *in, size_t len, size_t k, size_t n,
                              loco_index_mode mode, int rice_b, uint32_t *idx, loco_error *err)
{
    loco_index_reader r;
    LOCO_TRY(loco_index_reader_init(&r, in, len, k, n, mode, rice_b, err));
    for (size_t j = 0; j < k; j++) {
        uint32_t i = 0;
        LOCO_TRY(loco_index_reader_next(&r, &i, err));
        if (NULL != idx) {
            idx[j] = i;
        }
    }
    return loco_index_reader_finish(&r, err);
}

/* ---- deflate ------------------------------------------------------------------------------ */

/* Deflate src into dst (capacity cap); returns the compressed length or 0 if it did not fit. */
static size_t deflate_into(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (Z_OK != deflateInit2(&z, 1, Z_DEFLATED, 15, 8, Z_HUFFMAN_ONLY)) {
        return 0;
    }
    size_t out = 0;
    const size_t step = (size_t)1 << 30;
    size_t in_left = len, out_left = cap;
    z.next_in = (Bytef *)src;
    z.next_out = dst;
    int rc = Z_OK;
    while (Z_STREAM_END != rc) {
        size_t give_in = in_left > step ? step : in_left;
        size_t give_out = out_left > step ? step : out_left;
        z.avail_in = (uInt)give_in;
        z.avail_out = (uInt)give_out;
        int flush = give_in == in_left ? Z_FINISH : Z_NO_FLUSH;
        rc = deflate(&z, flush);
        in_left -= give_in - z.avail_in;
        out_left -= give_out - z.avail_out;
        if (Z_STREAM_ERROR == rc || (0 == out_left && Z_STREAM_END != rc)) {
            deflateEnd(&z);
            return 0;
        }
    }
    out = cap - out_left;
    deflateEnd(&z);
    return out;
}

loco_status loco_deflate_if_pays(uint8_t *buf, size_t len, size_t *packed_len, loco_error *err)
{
    *packed_len = 0;
    if (len < 64) {
        return LOCO_OK;
    }
    size_t trial = len < 65536 ? len : 65536;
    size_t cap = len; /* only a smaller result is useful */
    uint8_t *tmp = malloc(cap);
    if (NULL == tmp) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "deflate: cannot allocate %zu bytes", cap);
    }
    if (trial < len) {
        size_t t = deflate_into(buf, trial, tmp, trial);
        if (0 == t || t > trial - trial / 16) {
            free(tmp);
            return LOCO_OK;
        }
    }
    size_t out = deflate_into(buf, len, tmp, cap - 1);
    if (out > 0 && out < len) {
        memcpy(buf, tmp, out);
        *packed_len = out;
    }
    free(tmp);
    return LOCO_OK;
}

loco_status loco_inflate_exact(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                               loco_error *err)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (Z_OK != inflateInit(&z)) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "inflate: zlib could not start");
    }
    const size_t step = (size_t)1 << 30;
    size_t in_left = in_len, out_left = out_len;
    z.next_in = (Bytef *)in;
    z.next_out = out;
    int rc = Z_OK;
    while (Z_OK == rc) {
        size_t give_in = in_left > step ? step : in_left;
        size_t give_out = out_left > step ? step : out_left;
        z.avail_in = (uInt)give_in;
        z.avail_out = (uInt)give_out;
        rc = inflate(&z, Z_NO_FLUSH);
        in_left -= give_in - z.avail_in;
        out_left -= give_out - z.avail_out;
        if (Z_OK == rc && give_in - z.avail_in == 0 && give_out - z.avail_out == 0) {
            rc = Z_BUF_ERROR; /* no progress: input ended early or output is full */
        }
    }
    inflateEnd(&z);
    if (Z_STREAM_END != rc || 0 != in_left || 0 != out_left) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "deflated payload is corrupt or does not inflate to exactly %zu "
                              "bytes (zlib %d, %zu input bytes left, %zu output bytes missing)",
                              out_len, rc, in_left, out_left);
    }
    return LOCO_OK;
}
