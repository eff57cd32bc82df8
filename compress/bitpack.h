/* compress/bitpack.h — dense b-bit packing and an LSB-first bit stream.
 *
 * Packing: code j of a run occupies stream bits [j*bits, (j+1)*bits), where stream bit t is bit
 * (t % 8) of byte t / 8 (little-endian bit order). Every 8 codes fill exactly `bits` bytes, so a
 * run split at multiples of 8 codes packs into independent byte ranges (parallel, and the bytes
 * do not depend on the split). A run of `count` codes takes ceil(count * bits / 8) bytes and the
 * unused high bits of its last byte are zero.
 *
 * The bit stream (loco_bitwriter / loco_bitreader) carries variable-length codes (Elias-gamma,
 * Golomb-Rice) in the same bit order; the reader never reads past its declared length.
 */
#ifndef LOCO_COMPRESS_BITPACK_H
#define LOCO_COMPRESS_BITPACK_H

#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes that `count` codes of `bits` bits take: ceil(count * bits / 8). */
static inline size_t loco_bitpack_bytes(size_t count, int bits)
{
    return (count * (size_t)bits + 7) / 8;
}

/* Pack codes[0..count) (each < 2^bits, bits in 1..8) into loco_bitpack_bytes(count, bits)
 * bytes at out. */
void loco_bitpack(const uint8_t *codes, size_t count, int bits, uint8_t *out);

/* Unpack count codes of `bits` bits from in into codes. */
void loco_bitunpack(const uint8_t *in, size_t count, int bits, uint8_t *codes);

/* True when the padding bits above the last code of a packed run are all zero. */
bool loco_bitpack_padding_zero(const uint8_t *in, size_t count, int bits);

/* ---- variable-length bit stream ------------------------------------------------------------ */

typedef struct loco_bitwriter {
    uint8_t *buf;   /* (cap) */
    size_t cap;
    size_t bytes;   /* bytes flushed to buf */
    uint64_t acc;   /* pending bits, LSB first */
    int nacc;       /* pending bit count (< 64) */
    bool overflow;  /* a write would have passed cap: nothing past cap was written */
} loco_bitwriter;

void loco_bitwriter_init(loco_bitwriter *w, uint8_t *buf, size_t cap);
/* Append the low `nbits` (0..57) bits of v. */
void loco_bitwriter_put(loco_bitwriter *w, uint64_t v, int nbits);
/* Append `count` zero bits. */
void loco_bitwriter_zeros(loco_bitwriter *w, uint64_t count);
/* Flush the last partial byte (zero-padded); returns the total bytes written. */
size_t loco_bitwriter_finish(loco_bitwriter *w);

typedef struct loco_bitreader {
    const uint8_t *buf; /* (len) */
    size_t len;
    uint64_t pos;       /* next bit */
    uint64_t end;       /* len * 8 */
} loco_bitreader;

void loco_bitreader_init(loco_bitreader *r, const uint8_t *buf, size_t len);
/* Read `nbits` (0..57) bits; LOCO_ERR_TRUNCATED if the stream ends first. */
loco_status loco_bitreader_get(loco_bitreader *r, int nbits, uint64_t *v);
/* Count zero bits up to the next one bit and consume them and the one bit. At most `max_zeros`
 * zeros are accepted: more gives LOCO_ERR_FORMAT, the stream ending gives LOCO_ERR_TRUNCATED. */
loco_status loco_bitreader_unary(loco_bitreader *r, uint64_t max_zeros, uint64_t *zeros);

#endif /* LOCO_COMPRESS_BITPACK_H */
