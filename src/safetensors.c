/* src/safetensors.c — reading and writing the safetensors format (see checkpoint.h).
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * then the data section; offsets are relative to its start. A valid file's tensors tile the data
 * section exactly (no holes, no overlaps, nothing after the last byte).
 */
#include "src/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian; add byte swapping for this host");

/* ---------------------------------------------------------------------------------------------
 * Reading */

static size_t dtype_size(const char *dtype)
{
    static const struct {
        const char *name;
        size_t size;
    } k_dtypes[] = {{"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
                    {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
                    {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++) {
        if (0 == strcmp(dtype, k_dtypes[i].name)) {
            return k_dtypes[i].size;
        }
    }
    return 0;
}

/* A non-negative JSON integer, or -1. */
static int64_t json_index(const loco_json_node *n)
{
    return NULL != n && LOCO_JSON_NUMBER == n->type && n->is_integer && n->integer >= 0 ? n->integer
                                                                                        : -1;
}

/* Fill e from the header entry `node` (an object member named e->name). */
static loco_status parse_entry(const loco_safetensors *st, const loco_json_node *node,
                               loco_st_entry *e, size_t data_size, loco_error *err)
{
    const loco_json_doc *doc = &st->header;
    if (LOCO_JSON_OBJECT != node->type) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s: tensor '%s': header entry is not an object", st->label, e->name);
    }
    const loco_json_node *dtype = loco_json_get(doc, node, "dtype");
    const loco_json_node *shape = loco_json_get(doc, node, "shape");
    const loco_json_node *offsets = loco_json_get(doc, node, "data_offsets");
    if (NULL == dtype || LOCO_JSON_STRING != dtype->type || dtype->str_len >= sizeof e->dtype ||
        0 == dtype_size(dtype->str)) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: tensor '%s': missing or unknown dtype",
                              st->label, e->name);
    }
    memcpy(e->dtype, dtype->str, dtype->str_len + 1);
    if (NULL == shape || LOCO_JSON_ARRAY != shape->type) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: tensor '%s': missing shape", st->label,
                              e->name);
    }
    if (shape->count > LOCO_TENSOR_MAX_DIMS) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s: tensor '%s' has %d dimensions; loco reads at most %d", st->label,
                              e->name, shape->count, LOCO_TENSOR_MAX_DIMS);
    }
    e->ndim = shape->count;
    e->numel = 1;
    size_t elem = dtype_size(e->dtype);
    int d = 0;
    for (const loco_json_node *dim = loco_json_child(doc, shape); NULL != dim;
         dim = loco_json_next(doc, dim), d++) {
        int64_t v = json_index(dim);
        if (v < 0 || (0 != v && e->numel > (SIZE_MAX / 16) / (size_t)v)) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "%s: tensor '%s': dimension %d is not a valid size", st->label,
                                  e->name, d);
        }
        e->shape[d] = v;
        e->numel *= (size_t)v;
    }
    const loco_json_node *b = NULL != offsets ? loco_json_child(doc, offsets) : NULL;
    const loco_json_node *en = NULL != b ? loco_json_next(doc, b) : NULL;
    if (NULL == offsets || LOCO_JSON_ARRAY != offsets->type || 2 != offsets->count ||
        json_index(b) < 0 || json_index(en) < json_index(b)) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s: tensor '%s': data_offsets must be [begin, end] with "
                              "0 <= begin <= end",
                              st->label, e->name);
    }
    e->begin = (size_t)json_index(b);
    e->end = (size_t)json_index(en);
    if (e->end - e->begin != e->numel * elem) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s: tensor '%s': data_offsets [%zu, %zu) hold %zu bytes but %s of "
                              "%zu elements needs %zu",
                              st->label, e->name, e->begin, e->end, e->end - e->begin, e->dtype,
                              e->numel, e->numel * elem);
    }
    if (e->end > data_size) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "%s: tensor '%s' ends at data byte %zu but the file holds only %zu "
                              "bytes of data: the file is truncated",
                              st->label, e->name, e->end, data_size);
    }
    return LOCO_OK;
}

static int compare_begin(const void *a, const void *b)
{
    const loco_st_entry *x = *(const loco_st_entry *const *)a;
    const loco_st_entry *y = *(const loco_st_entry *const *)b;
    if (x->begin != y->begin) {
        return x->begin < y->begin ? -1 : 1;
    }
    return x->end < y->end ? -1 : (x->end > y->end ? 1 : 0);
}

static int compare_name(const void *a, const void *b)
{
    return strcmp((*(const loco_st_entry *const *)a)->name,
                  (*(const loco_st_entry *const *)b)->name);
}

/* The tensors must tile [0, data_size) and have distinct names. */
static loco_status check_layout(const loco_safetensors *st, size_t data_size, loco_error *err)
{
    if (0 == st->count) {
        return 0 == data_size
                   ? LOCO_OK
                   : loco_error_set(err, LOCO_ERR_FORMAT, "%s: %zu data bytes but no tensors",
                                    st->label, data_size);
    }
    const loco_st_entry **order = malloc((size_t)st->count * sizeof *order);
    if (NULL == order) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", st->label);
    }
    for (int i = 0; i < st->count; i++) {
        order[i] = &st->entries[i];
    }
    loco_status status = LOCO_OK;
    qsort(order, (size_t)st->count, sizeof *order, compare_name);
    for (int i = 1; i < st->count && LOCO_OK == status; i++) {
        if (0 == strcmp(order[i - 1]->name, order[i]->name)) {
            status = loco_error_set(err, LOCO_ERR_FORMAT, "%s: tensor '%s' appears twice",
                                    st->label, order[i]->name);
        }
    }
    qsort(order, (size_t)st->count, sizeof *order, compare_begin);
    size_t next = 0;
    for (int i = 0; i < st->count && LOCO_OK == status; i++) {
        if (order[i]->begin != next) {
            status = loco_error_set(err, LOCO_ERR_FORMAT,
                                    "%s: tensor '%s' starts at data byte %zu, expected %zu (holes "
                                    "or overlapping tensors)",
                                    st->label, order[i]->name, order[i]->begin, next);
        }
        next = order[i]->end;
    }
    if (LOCO_OK == status && next != data_size) {
        status = loco_error_set(err, LOCO_ERR_FORMAT, "%s: %zu bytes after the last tensor's data",
                                st->label, data_size - next);
    }
    free(order);
    return status;
}

loco_status loco_safetensors_parse(loco_safetensors *st, const uint8_t *bytes, size_t size,
                                   const char *label, loco_error *err)
{
    memset(st, 0, sizeof *st);
    snprintf(st->label, sizeof st->label, "%s", label);
    if (size < 8) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "%s: %zu bytes: a safetensors file starts with an 8-byte header "
                              "length (truncated or not a checkpoint)",
                              st->label, size);
    }
    uint64_t header_len;
    memcpy(&header_len, bytes, 8);
    if (header_len > LOCO_SAFETENSORS_MAX_HEADER) {
        return loco_error_set(
            err, LOCO_ERR_FORMAT, "%s: header length %llu is over %u bytes: not a safetensors file",
            st->label, (unsigned long long)header_len, LOCO_SAFETENSORS_MAX_HEADER);
    }
    if (header_len > size - 8) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "%s: the header is %llu bytes but only %zu follow: the file is "
                              "truncated",
                              st->label, (unsigned long long)header_len, size - 8);
    }
    loco_error jerr = {0};
    loco_json_limits limits = {.max_depth = 8, .max_nodes = 1 << 22};
    if (LOCO_OK !=
        loco_json_parse(&st->header, (const char *)bytes + 8, (size_t)header_len, &limits, &jerr)) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: the header is not valid JSON: %s",
                              st->label, loco_error_msg(&jerr, jerr.status));
    }
    st->bytes = bytes;
    st->size = size;
    st->data_start = 8 + (size_t)header_len;
    size_t data_size = size - st->data_start;
    const loco_json_node *root = loco_json_root(&st->header);
    if (NULL == root || LOCO_JSON_OBJECT != root->type) {
        loco_safetensors_close(st);
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: the header is not a JSON object", label);
    }
    st->entries = calloc((size_t)(root->count > 0 ? root->count : 1), sizeof *st->entries);
    if (NULL == st->entries) {
        loco_safetensors_close(st);
        return loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", label);
    }
    loco_status status = LOCO_OK;
    for (const loco_json_node *m = loco_json_child(&st->header, root);
         NULL != m && LOCO_OK == status; m = loco_json_next(&st->header, m)) {
        if (0 != strcmp(m->key, "__metadata__")) {
            loco_st_entry *e = &st->entries[st->count++];
            e->name = m->key;
            status = parse_entry(st, m, e, data_size, err);
            continue;
        }
        if (LOCO_JSON_OBJECT != m->type) {
            status = loco_error_set(err, LOCO_ERR_FORMAT, "%s: __metadata__ is not an object",
                                    st->label);
            break;
        }
        for (const loco_json_node *kv = loco_json_child(&st->header, m); NULL != kv;
             kv = loco_json_next(&st->header, kv)) {
            if (LOCO_JSON_STRING != kv->type) {
                status = loco_error_set(err, LOCO_ERR_FORMAT,
                                        "%s: __metadata__ value of '%s' is not a string", st->label,
                                        kv->key);
                break;
            }
        }
        st->metadata = m;
    }
    if (LOCO_OK == status) {
        status = check_layout(st, data_size, err);
    }
    if (LOCO_OK != status) {
        loco_safetensors_close(st);
    }
    return status;
}

loco_status loco_safetensors_open(loco_safetensors *st, const char *path, size_t max_bytes,
                                  loco_error *err)
{
    memset(st, 0, sizeof *st);
    char *data = NULL;
    size_t len = 0;
    LOCO_TRY(loco_file_read_all(path, max_bytes, &data, &len, err));
    loco_status status = loco_safetensors_parse(st, (const uint8_t *)data, len, path, err);
    if (LOCO_OK != status) {
        free(data);
        return status;
    }
    st->owned = (uint8_t *)data;
    return LOCO_OK;
}

void loco_safetensors_close(loco_safetensors *st)
{
    loco_json_free(&st->header);
    free(st->entries);
    free(st->owned);
    memset(st, 0, sizeof *st);
}

const loco_st_entry *loco_safetensors_find(const loco_safetensors *st, const char *name)
{
    for (int i = 0; i < st->count; i++) {
        if (0 == strcmp(st->entries[i].name, name)) {
            return &st->entries[i];
        }
    }
    return NULL;
}

const char *loco_safetensors_meta(const loco_safetensors *st, const char *key)
{
    if (NULL == st->metadata) {
        return NULL;
    }
    const loco_json_node *v = loco_json_get(&st->header, st->metadata, key);
    return NULL != v && LOCO_JSON_STRING == v->type ? v->str : NULL;
}

loco_status loco_safetensors_read_f32(const loco_safetensors *st, const loco_st_entry *e,
                                      float *dst, loco_error *err)
{
    if (0 != strcmp(e->dtype, "F32")) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s: tensor '%s' is %s; loco reads F32 tensors (convert the file)",
                              st->label, e->name, e->dtype);
    }
    memcpy(dst, st->bytes + st->data_start + e->begin, e->numel * sizeof(float));
    return LOCO_OK;
}

loco_status loco_safetensors_verify(const loco_safetensors *st, loco_error *err)
{
    const char *want = loco_safetensors_meta(st, "loco.data_xxh64");
    if (NULL == want) {
        return LOCO_OK;
    }
    char got[17];
    loco_hash_hex(loco_hash64(st->bytes + st->data_start, st->size - st->data_start, 0), got);
    if (0 != strcmp(got, want)) {
        return loco_error_set(err, LOCO_ERR_CHECKSUM,
                              "%s: data digest %s does not match the recorded %s: the file is "
                              "corrupt",
                              st->label, got, want);
    }
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Writing */

static size_t tensor_numel(const loco_st_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        n *= (size_t)t->shape[d];
    }
    return n;
}

loco_status loco_safetensors_write(const char *path, const loco_st_tensor *tensors, int count,
                                   const loco_st_meta *meta, int meta_count, loco_error *err)
{
    loco_hasher hasher;
    loco_hasher_init(&hasher, 0);
    for (int i = 0; i < count; i++) {
        LOCO_ASSERT(tensors[i].ndim >= 0 && tensors[i].ndim <= LOCO_TENSOR_MAX_DIMS);
        loco_hasher_update(&hasher, tensors[i].data, tensor_numel(&tensors[i]) * sizeof(float));
    }
    char digest[17];
    loco_hash_hex(loco_hasher_final(&hasher), digest);

    char *header = NULL;
    size_t header_len = 0;
    FILE *mem = open_memstream(&header, &header_len);
    if (NULL == mem) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "%s: cannot build the header", path);
    }
    loco_json_writer w;
    loco_json_writer_init(&w, mem, false);
    loco_json_begin_object(&w);
    loco_json_key(&w, "__metadata__");
    loco_json_begin_object(&w);
    for (int i = 0; i < meta_count; i++) {
        loco_json_key(&w, meta[i].key);
        loco_json_string(&w, meta[i].value);
    }
    loco_json_key(&w, "loco.data_xxh64");
    loco_json_string(&w, digest);
    loco_json_end_object(&w);
    size_t offset = 0;
    for (int i = 0; i < count; i++) {
        size_t bytes = tensor_numel(&tensors[i]) * sizeof(float);
        loco_json_key(&w, tensors[i].name);
        loco_json_begin_object(&w);
        loco_json_key(&w, "dtype");
        loco_json_string(&w, "F32");
        loco_json_key(&w, "shape");
        loco_json_begin_array(&w);
        for (int d = 0; d < tensors[i].ndim; d++) {
            loco_json_int(&w, tensors[i].shape[d]);
        }
        loco_json_end_array(&w);
        loco_json_key(&w, "data_offsets");
        loco_json_begin_array(&w);
        loco_json_uint(&w, offset);
        loco_json_uint(&w, offset + bytes);
        loco_json_end_array(&w);
        loco_json_end_object(&w);
        offset += bytes;
    }
    loco_json_end_object(&w);
    while (0 != (8 + ftell(mem)) % 8) { /* pad so the data starts 8-byte aligned */
        fputc(' ', mem);
    }
    if (0 != fclose(mem)) {
        free(header);
        return loco_error_set(err, LOCO_ERR_NOMEM, "%s: cannot build the header", path);
    }

    loco_atomic_file af;
    loco_status status = loco_atomic_open(&af, path, err);
    if (LOCO_OK != status) {
        free(header);
        return status;
    }
    uint64_t len64 = header_len;
    bool ok =
        1 == fwrite(&len64, 8, 1, af.fp) && header_len == fwrite(header, 1, header_len, af.fp);
    for (int i = 0; i < count && ok; i++) {
        size_t n = tensor_numel(&tensors[i]);
        ok = n == fwrite(tensors[i].data, sizeof(float), n, af.fp);
    }
    free(header);
    if (!ok) {
        loco_atomic_abort(&af);
        return loco_error_set(err, LOCO_ERR_IO, "%s: write failed (disk full?)", path);
    }
    return loco_atomic_commit(&af, err);
}
