/* base/tensor.h — the tensor table: named views into one flat fp32 buffer (DESIGN.md §4).
 *
 * The model owns its parameters as one contiguous buffer and describes it by a table of
 * {name, offset, shape} in a fixed order. Everything that works per tensor — codecs and their
 * error-feedback state, Streaming DiLoCo fragments, DeMo's DCT chunks, checkpoints, the
 * KV-sharing converter — walks this table and never the model's structs. A tensor shared by
 * several layers (cross-layer KV) appears once, under its producing layer.
 */
#ifndef LOCO_BASE_TENSOR_H
#define LOCO_BASE_TENSOR_H

#include "status.h"

#include <stddef.h>
#include <stdint.h>

#define LOCO_TENSOR_NAME_MAX 64
#define LOCO_TENSOR_MAX_DIMS 4

typedef struct loco_tensor {
    char name[LOCO_TENSOR_NAME_MAX]; /* e.g. "h.3.attn.q.weight" */
    size_t offset;                   /* first element in the flat buffer */
    size_t numel;                    /* product of shape */
    int ndim;                        /* 1..LOCO_TENSOR_MAX_DIMS */
    int64_t shape[LOCO_TENSOR_MAX_DIMS];
    int layer; /* transformer block that owns it, or -1 (embeddings, final norm) */
} loco_tensor;

typedef struct loco_tensor_table {
    loco_tensor *tensors; /* (count) */
    int count;
    size_t numel; /* total elements: the flat buffer's length */
} loco_tensor_table;

/* Allocate room for `capacity` tensors (count starts at 0). */
loco_status loco_tensor_table_init(loco_tensor_table *table, int capacity);
void loco_tensor_table_free(loco_tensor_table *table);

/* Append a tensor right after the previous one (offset = current numel). dims has ndim entries.
 * The caller guarantees capacity (asserted). Returns the new tensor's index. */
int loco_tensor_table_add(loco_tensor_table *table, const char *name, int layer, int ndim,
                          const int64_t *dims);

/* Index of the tensor called `name`, or -1. */
int loco_tensor_table_find(const loco_tensor_table *table, const char *name);

/* Check that tensors tile [0, numel) in order without gaps or overlaps and that each numel
 * matches its shape. Returns LOCO_ERR_FORMAT with a message otherwise. */
loco_status loco_tensor_table_validate(const loco_tensor_table *table, loco_error *err);

/* A zeroed, 64-byte aligned buffer of `bytes` bytes (NULL on failure); free with free(). */
void *loco_alloc_aligned(size_t bytes);

#endif /* LOCO_BASE_TENSOR_H */
