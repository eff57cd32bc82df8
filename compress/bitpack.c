/* compress/bitpack.c — dense b-bit packing and the LSB-first bit stream (see bitpack.h). */
#include "bitpack.h"

#include <string.h>

/* Pack 8 codes into `bits` bytes. */
static inline void pack8(const uint8_t *c, int bits, uint8_t *out)
{
    uint64_t v = 0;
    for (int j = 0; j < 8; j++) {
        v |= (uint64_t)c[j] << (j * bits);
    }
    for (int b = 0; b < bits; b++) {
        out[b] = (uint8_t)(v >> (8 * b));
    }
}

static inline void unpack8(const uint8_t *in, int bits, uint8_t *c)
{
    uint64_t v = 0;
    for (int b = 0; b < bits; b++) {
        v |= (uint64_t)in[b] << (8 * b);
    }
    uint64_t mask = (1u << bits) - 1u;
    for (int j = 0; j < 8; j++) {
        c[j] = (uint8_t)((v >> (j * bits)) & mask);
    }
}

void loco_bitpack(const uint8_t *codes, size_t count, int bits, uint8_t *out)
{
    size_t full = count / 8;
    if (8 == bits) {
        memcpy(out, codes, count);
        return;
    }
    if (4 == bits) {
        for (size_t i = 0; i < count / 2; i++) {
            out[i] = (uint8_t)(codes[2 * i] | (codes[2 * i + 1] << 4));
        }
        if (count & 1) {
            out[count / 2] = codes[count - 1];
        }
        return;
    }
    for (size_t g = 0; g < full; g++) {
        pack8(codes + 8 * g, bits, out + (size_t)bits * g);
    }
    size_t rest = count - 8 * full;
    if (rest > 0) {
        uint8_t tail[8] = {0};
        memcpy(tail, codes + 8 * full, rest);
        uint8_t bytes[16] = {0};
        pack8(tail, bits & 15, bytes);
        memcpy(out + (size_t)bits * full, bytes, loco_bitpack_bytes(rest, bits));
    }
}

void loco_bitunpack(const uint8_t *in, size_t count, int bits, uint8_t *codes)
{
    if (8 == bits) {
        memcpy(codes, in, count);
        return;
    }
    if (4 == bits) {
        for (size_t i = 0; i < count / 2; i++) {
            codes[2 * i] = in[i] & 0x0F;
            codes[2 * i + 1] = in[i] >> 4;
        }
        if (count & 1) {
            codes[count - 1] = in[count / 2] & 0x0F;
        }
        return;
    }
    size_t full = count / 8;
    for (size_t g = 0; g < full; g++) {
        unpack8(in + (size_t)bits * g, bits, codes + 8 * g);
    }
    size_t rest = count - 8 * full;
    if (rest > 0) {
        uint8_t bytes[16] = {0};
        memcpy(bytes, in + (size_t)bits * full, loco_bitpack_bytes(rest, bits));
        uint8_t tail[8];
        unpack8(bytes, bits & 15, tail);
        memcpy(codes + 8 * full, tail, rest);
    }
}

bool loco_bitpack_padding_zero(const uint8_t *in, size_t count, int bits)
{
    size_t used = count * (size_t)bits;
    if (0 == used % 8) {
        return true;
    }
    uint8_t last = in[used / 8];
    return 0 == (last >> (used % 8));
}

/* ---- bit stream ----------------------------------------------------------------------------- */

void loco_bitwriter_init(loco_bitwriter *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->bytes = 0;
    w->acc = 0;
    w->nacc = 0;
    w->overflow = false;
}

static inline void bitwriter_flush_bytes(loco_bitwriter *w)
{
    while (w->nacc >= 8) {
        if (w->bytes < w->cap) {
            w->buf[w->bytes] = (uint8_t)w->acc;
        } else {
            w->overflow = true;
        }
        w->bytes++;
        w->acc >>= 8;
        w->nacc -= 8;
    }
}

void loco_bitwriter_put(loco_bitwriter *w, uint64_t v, int nbits)
{
    if (nbits <= 0) {
        return;
    }
    v &= (nbits >= 64) ? ~0ull : ((1ull << nbits) - 1);
    w->acc |= v << w->nacc;
    w->nacc += nbits;
    bitwriter_flush_bytes(w);
}

void loco_bitwriter_zeros(loco_bitwriter *w, uint64_t count)
{
    while (count > 0) {
        int chunk = count > 48 ? 48 : (int)count;
        loco_bitwriter_put(w, 0, chunk);
        count -= (uint64_t)chunk;
    }
}

size_t loco_bitwriter_finish(loco_bitwriter *w)
{
    if (w->nacc > 0) {
        w->nacc = 8;
        bitwriter_flush_bytes(w);
        w->nacc = 0;
    }
    return w->bytes;
}

void loco_bitreader_init(loco_bitreader *r, const uint8_t *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
    r->end = (uint64_t)len * 8;
}

/* Up to 57 bits starting at bit pos (the caller checked pos + nbits <= end). */
static inline uint64_t bitreader_peek(const loco_bitreader *r, uint64_t pos, int nbits)
{
    size_t byte = (size_t)(pos / 8);
    int shift = (int)(pos % 8);
    uint64_t v = 0;
    size_t avail = r->len - byte;
    if (avail >= 8) {
        memcpy(&v, r->buf + byte, 8);
    } else {
        memcpy(&v, r->buf + byte, avail);
    }
    v >>= shift;
    return nbits >= 64 ? v : (v & ((1ull << nbits) - 1));
}

loco_status loco_bitreader_get(loco_bitreader *r, int nbits, uint64_t *v)
{
    if ((uint64_t)nbits > r->end - r->pos) {
        return LOCO_ERR_TRUNCATED;
    }
    *v = nbits > 0 ? bitreader_peek(r, r->pos, nbits) : 0;
    r->pos += (uint64_t)nbits;
    return LOCO_OK;
}

loco_status loco_bitreader_unary(loco_bitreader *r, uint64_t max_zeros, uint64_t *zeros)
{
    uint64_t count = 0;
    for (;;) {
        uint64_t left = r->end - r->pos;
        if (0 == left) {
            return LOCO_ERR_TRUNCATED;
        }
        int take = left > 56 ? 56 : (int)left;
        uint64_t window = bitreader_peek(r, r->pos, take);
        if (0 != window) {
            int tz = __builtin_ctzll(window);
            count += (uint64_t)tz;
            if (count > max_zeros) {
                return LOCO_ERR_FORMAT;
            }
            r->pos += (uint64_t)tz + 1;
            *zeros = count;
            return LOCO_OK;
        }
        count += (uint64_t)take;
        r->pos += (uint64_t)take;
        if (count > max_zeros) {
            return LOCO_ERR_FORMAT;
        }
    }
}
