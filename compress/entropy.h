/* compress/entropy.h — the entropy stage: coding of sorted sparse indices and deflate of a
 * whole payload when it pays.
 *
 * Index coding. k strictly increasing indices below n become gaps g_0 = i_0 + 1,
 * g_j = i_j - i_{j-1} (all >= 1), coded as one of:
 *   RAW     k little-endian uint32 indices                           32 k bits
 *   GAMMA   Elias-gamma of each gap: L = floor(log2 g) zeros, a one, then the low L bits of g
 *           (LSB first)                                              sum (2 L_j + 1) bits
 *   RICE    Golomb-Rice with parameter b: q = (g - 1) >> b zeros, a one, then the low b bits
 *           of g - 1                                                 sum (q_j + 1 + b) bits
 *   BITMAP  n bits, bit i set when i is kept                         n bits
 * (bit streams are LSB-first, bitpack.h; the last byte is zero-padded). The encoder picks the
 * Rice parameter from the density, b = max(0, floor(log2(ln 2 * n / k))), the choice that
 * minimises the expected length for geometric gaps, then takes whichever mode is shortest for
 * the actual gaps (ties to the lower mode number), so coding never costs more than RAW.
 *
 * Deflate. loco_deflate_if_pays compresses a payload with zlib (Huffman-only, fast) when a trial
 * on its first 64 KiB shrinks it by at least 1/16 and the whole result is smaller.
 */
#ifndef LOCO_COMPRESS_ENTROPY_H
#define LOCO_COMPRESS_ENTROPY_H

#include "base/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum loco_index_mode {
    LOCO_INDEX_RAW = 0,
    LOCO_INDEX_GAMMA = 1,
    LOCO_INDEX_RICE = 2,
    LOCO_INDEX_BITMAP = 3,
    LOCO_INDEX_MODE_COUNT
} loco_index_mode;

/* Closed-form code lengths in bits (x >= 1). */
static inline uint64_t loco_gamma_bits(uint64_t x)
{
    int l = 63 - __builtin_clzll(x);
    return 2 * (uint64_t)l + 1;
}
static inline uint64_t loco_rice_bits(uint64_t x, int b) { return ((x - 1) >> b) + 1 + (uint64_t)b; }

/* The Rice parameter for k of n kept (see above); 0 when k == 0. */
int loco_rice_param(size_t k, size_t n);

/* Exact bytes that coding idx[0..k) (strictly increasing, < n) in `mode` takes. */
size_t loco_index_bytes(const uint32_t *idx, size_t k, size_t n, loco_index_mode mode,
                        int rice_b);

/* Pick the shortest mode for idx[0..k); *rice_b gets the Rice parameter, *bytes the length. */
void loco_index_choose(const uint32_t *idx, size_t k, size_t n, loco_index_mode *mode,
                       int *rice_b, size_t *bytes);

/* Code idx[0..k) into out (capacity cap >= loco_index_bytes(...)); returns bytes written, or 0
 * with nothing meaningful written if cap is too small (a caller bug). */
size_t loco_index_encode(const uint32_t *idx, size_t k, size_t n, loco_index_mode mode,
                         int rice_b, uint8_t *out, size_t cap);

/* A streaming decoder: validates as it goes, so a caller can first run it to the end to check a
 * message and then run it again to apply it. */
typedef struct loco_index_reader {
    const uint8_t *in; /* (len) */
    size_t len, k, n;
    loco_index_mode mode;
    int rice_b;
    size_t emitted;    /* indices returned so far */
    int64_t prev;      /* last index, -1 before the first */
    uint64_t pos;      /* bit position (coded modes) or index (bitmap/raw) */
} loco_index_reader;

/* LOCO_ERR_RANGE for k > n, a mode out of range or a Rice parameter above 31; LOCO_ERR_TRUNCATED
 * when len cannot hold k raw indices or an n-bit bitmap. */
loco_status loco_index_reader_init(loco_index_reader *r, const uint8_t *in, size_t len,
                                   size_t k, size_t n, loco_index_mode mode, int rice_b,
                                   loco_error *err);

/* The next index. Errors: LOCO_ERR_FORMAT for a zero gap / non-increasing raw index / unary run
 * too long, LOCO_ERR_RANGE for an index >= n, LOCO_ERR_TRUNCATED for bits past the end. */
loco_status loco_index_reader_next(loco_index_reader *r, uint32_t *index, loco_error *err);

/* After k indices: check that the stream ends exactly (no extra set bits or bytes, zero padding):
 * LOCO_ERR_FORMAT otherwise. */
loco_status loco_index_reader_finish(const loco_index_reader *r, loco_error *err);

/* Decode and validate all k indices into idx (idx may be NULL: validate only). */
loco_status loco_index_decode(const uint8_t *in, size_t len, size_t k, size_t n,
                              loco_index_mode mode, int rice_b, uint32_t *idx, loco_error *err);

/* Deflate buf[0..len) in place when it pays: *packed_len is the new length, or 0 when the
 * payload was left as it was. LOCO_ERR_NOMEM if the scratch buffer cannot be allocated. */
loco_status loco_deflate_if_pays(uint8_t *buf, size_t len, size_t *packed_len, loco_error *err);

/* Inflate in[0..in_len) into exactly out_len bytes; LOCO_ERR_FORMAT if the stream is corrupt,
 * ends early, produces another length or leaves input unconsumed. */
loco_status loco_inflate_exact(const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                               loco_error *err);

#endif /* LOCO_COMPRESS_ENTROPY_H */
