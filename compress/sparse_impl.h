/* compress/sparse_impl.h — private: the (index, value) payload shared by top-k and DGC.
 *
 *   u8 index mode (entropy.h), u8 Rice parameter, u16 zero, u32 index_bytes,
 *   index section (index_bytes), k fp32 values in index order.
 * Without the entropy stage the mode is always RAW (8 + 8 k bytes); with it, the shortest of
 * RAW / GAMMA / RICE / BITMAP for these indices.
 */
#ifndef LOCO_COMPRESS_SPARSE_IMPL_H
#define LOCO_COMPRESS_SPARSE_IMPL_H

#include "codec_impl.h"

#define LOCO_SPARSE_HEADER_BYTES 8

/* Largest sparse payload with k entries. */
static inline size_t loco_sparse_bound(size_t k) { return LOCO_SPARSE_HEADER_BYTES + 8 * k; }

/* Write k (index ascending, value) pairs; *len gets the payload length. */
loco_status loco_sparse_write(const uint32_t *idx, const float *val, size_t k, size_t n,
                              bool entropy, uint8_t *payload, size_t cap, size_t *len,
                              loco_error *err);

/* Validate a sparse payload of w->k entries for n elements, then out[i] += scale * v. */
loco_status loco_sparse_decode_add(const loco_wire *w, const uint8_t *payload, size_t len,
                                   float *out, size_t n, float scale, loco_error *err);

#endif /* LOCO_COMPRESS_SPARSE_IMPL_H */
