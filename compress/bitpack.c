/* compress/bitpack.c — dense b-bit packing and the LSB-first bit stream (see bitpack.h). */
#include "bitpack.h"

#include <string.h>

/* w ones repeated every p bits across 64 bits. */
static inline uint64_t lanes_mask(int w, int p)
{
    uint64_t m = 0, one = (w >= 64) ? ~0ull : ((1ull << w) - 1);
    for (int s = 0; s < 64; s += p) {
        m |= one << s;
    }
    return m;
}

/* Pack 8 codes (one per byte of v, each < 2^bits) into the low 8 * bits bits: three halving
 * steps join neighbours (bytes -> 16-bit pairs -> 32-bit quads -> one run). */
static inline uint64_t pack8_word(uint64_t v, int bits)
{
    uint64_t m1 = lanes_mask(bits, 16), m2 = lanes_mask(2 * bits, 32), m3 = lanes_mask(4 * bits, 64);
    v = (v & m1) | ((v >> (8 - bits)) & (m1 << bits));
    v = (v & m2) | ((v >> (16 - 2 * bits)) & (m2 << (2 * bits)));
    v = (v & m3) | ((v >> (32 - 4 * bits)) & (m3 << (4 * bits)));
    return v;
}

/* The inverse: spread 8 * bits bits into 8 bytes of `bits` bits each. */
static inline uint64_t unpack8_word(uint64_t v, int bits)
{
    uint64_t m1 = lanes_mask(bits, 16), m2 = lanes_mask(2 * bits, 32), m3 = lanes_mask(4 * bits, 64);
    v = (v & m3) | ((v << (32 - 4 * bits)) & (m3 << 32));
    v = (v & m2) | ((v << (16 - 2 * bits)) & (m2 << 16));
    v = (v & m1) | ((v << (8 - bits)) & (m1 << 8));
    return v;
}

/* Pack 8 codes into `bits` bytes at out; with `room`, 8 bytes may be stored (the bytes past
 * `bits` are zero and the next group overwrites them). */
static inline void pack8(const uint8_t *c, int bits, uint8_t *out, bool room)
{
    uint64_t v;
    memcpy(&v, c, 8);
    v = pack8_word(v, bits);
    if (room) {
        memcpy(out, &v, 8);
    } else {
        for (int j = 0; j < bits && j < 8; j++) { /* little-endian: the low `bits` bytes */
            out[j] = (uint8_t)(v >> (8 * j));
        }
    }
}

/* Unpack 8 codes from `bits` bytes at in; with `room`, 8 bytes may be loaded. */
static inline void unpack8(const uint8_t *in, int bits, uint8_t *c, bool room)
{
    uint64_t v = 0;
    if (room) {
        memcpy(&v, in, 8);
        v &= bits >= 8 ? ~0ull : ((1ull << (8 * bits)) - 1);
    } else {
        for (int j = 0; j < bits && j < 8; j++) {
            v |= (uint64_t)in[j] << (8 * j);
        }
    }
    v = unpack8_word(v, bits);
    memcpy(c, &v, 8);
}

/* Whole bytes of 8 / bits codes each for bits 1, 2, 4: plain loops the compiler vectorises. */
static size_t pack_bytes_simple(const uint8_t *c, size_t count, int bits, uint8_t *out)
{
    size_t per = 8 / (size_t)bits, whole = count / per;
    if (4 == bits) {
        for (size_t i = 0; i < whole; i++) {
            out[i] = (uint8_t)(c[2 * i] | c[2 * i + 1] << 4);
        }
    } else if (2 == bits) {
        for (size_t i = 0; i < whole; i++) {
            out[i] = (uint8_t)(c[4 * i] | c[4 * i + 1] << 2 | c[4 * i + 2] << 4 | c[4 * i + 3] << 6);
        }
    } else {
        for (size_t i = 0; i < whole; i++) {
            const uint8_t *g = c + 8 * i;
            out[i] = (uint8_t)(g[0] | g[1] << 1 | g[2] << 2 | g[3] << 3 | g[4] << 4 | g[5] << 5 |
                               g[6] << 6 | g[7] << 7);
        }
    }
    return whole * per;
}

static size_t unpack_bytes_simple(const uint8_t *in, size_t count, int bits, uint8_t *c)
{
    size_t per = 8 / (size_t)bits, whole = count / per;
    if (4 == bits) {
        for (size_t i = 0; i < whole; i++) {
            c[2 * i] = in[i] & 0x0F;
            c[2 * i + 1] = in[i] >> 4;
        }
    } else if (2 == bits) {
        for (size_t i = 0; i < whole; i++) {
            c[4 * i] = in[i] & 3;
            c[4 * i + 1] = (in[i] >> 2) & 3;
            c[4 * i + 2] = (in[i] >> 4) & 3;
            c[4 * i + 3] = in[i] >> 6;
        }
    } else {
        for (size_t i = 0; i < whole; i++) {
            uint8_t v = in[i];
            uint8_t *g = c + 8 * i;
            g[0] = v & 1;
            g[1] = (v >> 1) & 1;
            g[2] = (v >> 2) & 1;
            g[3] = (v >> 3) & 1;
            g[4] = (v >> 4) & 1;
            g[5] = (v >> 5) & 1;
            g[6] = (v >> 6) & 1;
            g[7] = v >> 7;
        }
    }
    return whole * per;
}

void loco_bitpack(const uint8_t *codes, size_t count, int bits, uint8_t *out)
{
    if (8 == bits) {
        memcpy(out, codes, count);
        return;
    }
    if (1 == bits || 2 == bits || 4 == bits) {
        size_t done = pack_bytes_simple(codes, count, bits, out);
        if (done < count) { /* the last partial byte, high bits zero */
            uint8_t v = 0;
            for (size_t j = done; j < count; j++) {
                v |= (uint8_t)(codes[j] << (bits * (int)(j - done)));
            }
            out[done * (size_t)bits / 8] = v;
        }
        return;
    }
    size_t full = count / 8, bytes = loco_bitpack_bytes(count, bits);
    for (size_t g = 0; g < full; g++) {
        pack8(codes + 8 * g, bits, out + (size_t)bits * g, (size_t)bits * g + 8 <= bytes);
    }
    size_t rest = count - 8 * full;
    if (rest > 0) {
        uint8_t tail[8] = {0};
        memcpy(tail, codes + 8 * full, rest);
        uint8_t packed[8];
        pack8(tail, bits, packed, true);
        memcpy(out + (size_t)bits * full, packed, bytes - (size_t)bits * full);
    }
}

void loco_bitunpack(const uint8_t *in, size_t count, int bits, uint8_t *codes)
{
    if (8 == bits) {
        memcpy(codes, in, count);
        return;
    }
    if (1 == bits || 2 == bits || 4 == bits) {
        size_t done = unpack_bytes_simple(in, count, bits, codes);
        for (size_t j = done; j < count; j++) {
            codes[j] = (uint8_t)((in[done * (size_t)bits / 8] >> (bits * (int)(j - done))) &
                                 ((1u << bits) - 1u));
        }
        return;
    }
    size_t full = count / 8, bytes = loco_bitpack_bytes(count, bits);
    for (size_t g = 0; g < full; g++) {
        unpack8(in + (size_t)bits * g, bits, codes + 8 * g, (size_t)bits * g + 8 <= bytes);
    }
    size_t rest = count - 8 * full;
    if (rest > 0) {
        uint8_t packed[8] = {0}, tail[8];
        memcpy(packed, in + (size_t)bits * full, bytes - (size_t)bits * full);
        unpack8(packed, bits, tail, true);
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
