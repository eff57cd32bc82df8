/* base/tensor.c — the tensor table (see tensor.h). */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

loco_status loco_tensor_table_init(loco_tensor_table *table, int capacity)
{
    LOCO_ASSERT(capacity >= 0);
    table->tensors = calloc((size_t)(capacity > 0 ? capacity : 1), sizeof(loco_tensor));
    table->count = 0;
    table->numel = 0;
    return NULL == table->tensors ? LOCO_ERR_NOMEM : LOCO_OK;
}

void loco_tensor_table_free(loco_tensor_table *table)
{
    free(table->tensors);
    table->tensors = NULL;
    table->count = 0;
    table->numel = 0;
}

int loco_tensor_table_add(loco_tensor_table *table, const char *name, int layer, int ndim,
                          const int64_t *dims)
{
    LOCO_ASSERT(ndim >= 1 && ndim <= LOCO_TENSOR_MAX_DIMS);
    LOCO_ASSERT(strlen(name) < LOCO_TENSOR_NAME_MAX);
    loco_tensor *t = &table->tensors[table->count];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        LOCO_ASSERT(dims[d] > 0);
        t->shape[d] = dims[d];
        t->numel *= (size_t)dims[d];
    }
    t->offset = table->numel;
    t->layer = layer;
    table->numel += t->numel;
    return table->count++;
}

int loco_tensor_table_find(const loco_tensor_table *table, const char *name)
{
    for (int i = 0; i < table->count; i++) {
        if (0 == strcmp(table->tensors[i].name, name)) {
            return i;
        }
    }
    return -1;
}

loco_status loco_tensor_table_validate(const loco_tensor_table *table, loco_error *err)
{
    size_t next = 0;
    for (int i = 0; i < table->count; i++) {
        const loco_tensor *t = &table->tensors[i];
        if (t->ndim < 1 || t->ndim > LOCO_TENSOR_MAX_DIMS) {
            return loco_error_set(err, LOCO_ERR_FORMAT, "tensor %s: %d dimensions (1..%d allowed)",
                                  t->name, t->ndim, LOCO_TENSOR_MAX_DIMS);
        }
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] <= 0) {
                return loco_error_set(err, LOCO_ERR_FORMAT, "tensor %s: dimension %d is %lld",
                                      t->name, d, (long long)t->shape[d]);
            }
            numel *= (size_t)t->shape[d];
        }
        if (numel != t->numel || t->offset != next) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "tensor %s: offset %zu size %zu, expected offset %zu size %zu",
                                  t->name, t->offset, t->numel, next, numel);
        }
        next += numel;
    }
    if (next != table->numel) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "tensor table covers %zu of %zu elements",
                              next, table->numel);
    }
    return LOCO_OK;
}

void *loco_alloc_aligned(size_t bytes)
{
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (0 != posix_memalign(&p, 64, rounded > 0 ? rounded : 64)) {
        return NULL;
    }
    memset(p, 0, rounded > 0 ? rounded : 64);
    return p;
}
