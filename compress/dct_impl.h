/* compress/dct_impl.h — private to compress/: the chunk geometry of a DCT top-k message
 * (dct.h's layout), shared by the CPU codec (dct.c) and the GPU encoder's framing
 * (codec_cuda.c). */
#ifndef LOCO_COMPRESS_DCT_IMPL_H
#define LOCO_COMPRESS_DCT_IMPL_H

#include <stddef.h>

#define DCT_MAX 64

typedef struct loco_dct_geom {
    size_t rows, cols, rc, cc, m; /* chunk rc x cc = m coefficients */
    size_t kc;                    /* kept per chunk */
    size_t nbr, nbc, nchunks;     /* chunks per column / row, total */
    int ib;                       /* bits per local index */
    size_t idx_bytes;             /* packed index bytes per chunk */
    size_t K;                     /* kept in all */
    size_t total;                 /* payload bytes */
} loco_dct_geom;

/* The geometry of a rows x cols tensor with chunk_topk kept per chunk. */
void loco_dct_geom_init(loco_dct_geom *g, size_t rows, size_t cols, size_t chunk_topk);

#endif /* LOCO_COMPRESS_DCT_IMPL_H */
