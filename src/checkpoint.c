/* src/checkpoint.c — model weights and training state as safetensors files (see checkpoint.h).
 *
 * Read in this order: the model configuration as JSON, weights (save, read config, load),
 * training state (save, load). Every load checks everything before it copies a byte, so a refused
 * file leaves the model and optimizer untouched.
 */
#include "src/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WEIGHTS_FORMAT "loco-weights"
#define STATE_FORMAT "loco-train-state"
#define FORMAT_VERSION "1"

/* ---------------------------------------------------------------------------------------------
 * The model configuration as JSON */

/* A malloc'd JSON text of cfg, or NULL when out of memory. */
static char *config_to_json(const loco_model_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (NULL == mem) {
        return NULL;
    }
    loco_json_writer w;
    loco_json_writer_init(&w, mem, false);
    loco_json_begin_object(&w);
    const struct {
        const char *key;
        int value;
    } ints[] = {{"n_layer", cfg->n_layer},     {"n_embd", cfg->n_embd}, {"n_head", cfg->n_head},
                {"n_kv_head", cfg->n_kv_head}, {"ctx", cfg->ctx},       {"vocab", cfg->vocab}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        loco_json_key(&w, ints[i].key);
        loco_json_int(&w, ints[i].value);
    }
    loco_json_key(&w, "kv_src");
    loco_json_begin_array(&w);
    for (int l = 0; l < cfg->n_layer; l++) {
        loco_json_int(&w, cfg->kv_src[l]);
    }
    loco_json_end_array(&w);
    loco_json_key(&w, "init_std");
    loco_json_number(&w, cfg->init_std);
    loco_json_end_object(&w);
    if (0 != fclose(mem)) {
        free(text);
        return NULL;
    }
    return text;
}

static loco_status json_int_field(const loco_json_doc *doc, const loco_json_node *obj,
                                  const char *key, int *out, const char *path, loco_error *err)
{
    const loco_json_node *n = loco_json_get(doc, obj, key);
    if (NULL == n || LOCO_JSON_NUMBER != n->type || !n->is_integer || n->integer < -1 ||
        n->integer > INT32_MAX) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s: the stored model configuration lacks a valid '%s'", path, key);
    }
    *out = (int)n->integer;
    return LOCO_OK;
}

static loco_status config_from_json(const char *text, loco_model_config *cfg, const char *path,
                                    loco_error *err)
{
    loco_json_doc doc;
    loco_error jerr = {0};
    if (LOCO_OK != loco_json_parse(&doc, text, strlen(text), NULL, &jerr)) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: the stored model configuration: %s", path,
                              loco_error_msg(&jerr, jerr.status));
    }
    loco_model_config_default(cfg);
    const loco_json_node *root = loco_json_root(&doc);
    loco_status st =
        LOCO_JSON_OBJECT == root->type
            ? LOCO_OK
            : loco_error_set(err, LOCO_ERR_FORMAT,
                             "%s: the stored model configuration is not an object", path);
    const char *keys[] = {"n_layer", "n_embd", "n_head", "n_kv_head", "ctx", "vocab"};
    int *fields[] = {&cfg->n_layer,   &cfg->n_embd, &cfg->n_head,
                     &cfg->n_kv_head, &cfg->ctx,    &cfg->vocab};
    for (int i = 0; i < 6 && LOCO_OK == st; i++) {
        st = json_int_field(&doc, root, keys[i], fields[i], path, err);
    }
    const loco_json_node *kv = LOCO_OK == st ? loco_json_get(&doc, root, "kv_src") : NULL;
    const loco_json_node *std = LOCO_OK == st ? loco_json_get(&doc, root, "init_std") : NULL;
    if (LOCO_OK == st &&
        (NULL == kv || LOCO_JSON_ARRAY != kv->type || kv->count != cfg->n_layer ||
         cfg->n_layer > LOCO_MAX_LAYERS || NULL == std || LOCO_JSON_NUMBER != std->type)) {
        st = loco_error_set(err, LOCO_ERR_FORMAT,
                            "%s: the stored model configuration has no valid kv_src / init_std",
                            path);
    }
    if (LOCO_OK == st) {
        int l = 0;
        for (const loco_json_node *e = loco_json_child(&doc, kv); NULL != e;
             e = loco_json_next(&doc, e), l++) {
            cfg->kv_src[l] = LOCO_JSON_NUMBER == e->type && e->is_integer ? (int)e->integer : -1;
        }
        cfg->init_std = (float)std->number;
        loco_error verr = {0};
        if (LOCO_OK != loco_model_config_validate(cfg, &verr)) {
            st = loco_error_set(err, LOCO_ERR_FORMAT, "%s: the stored model configuration: %s",
                                path, verr.msg);
        }
    }
    loco_json_free(&doc);
    return st;
}

/* LOCO_OK if the shapes agree; otherwise a message naming the first differing field. */
static loco_status config_compare(const loco_model_config *file, const loco_model_config *want,
                                  const char *path, loco_error *err)
{
    const char *keys[] = {"n_layer", "n_embd", "n_head", "n_kv_head", "ctx", "vocab"};
    const int a[] = {file->n_layer,   file->n_embd, file->n_head,
                     file->n_kv_head, file->ctx,    file->vocab};
    const int b[] = {want->n_layer,   want->n_embd, want->n_head,
                     want->n_kv_head, want->ctx,    want->vocab};
    for (int i = 0; i < 6; i++) {
        if (a[i] != b[i]) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "%s was saved from a model with model.%s = %d; this model has "
                                  "%d (use a matching config, or convert the checkpoint)",
                                  path, keys[i], a[i], b[i]);
        }
    }
    for (int l = 0; l < file->n_layer; l++) {
        if (file->kv_src[l] != want->kv_src[l]) {
            return loco_error_set(err, LOCO_ERR_FORMAT,
                                  "%s was saved from a model with model.kv_src[%d] = %d; this "
                                  "model has %d (convert the checkpoint for KV sharing)",
                                  path, l, file->kv_src[l], want->kv_src[l]);
        }
    }
    return LOCO_OK;
}

static void format_shape(char *out, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && used < cap; d++) {
        used += (size_t)snprintf(out + used, cap - used, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    }
    if (used < cap) {
        snprintf(out + used, cap - used, "]");
    }
}

/* The entry `name` must exist as F32 with exactly the given shape. */
static loco_status expect_tensor(const loco_safetensors *st, const char *name, int ndim,
                                 const int64_t *shape, const loco_st_entry **out, loco_error *err)
{
    const loco_st_entry *e = loco_safetensors_find(st, name);
    if (NULL == e) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s has no tensor '%s' (saved from another model shape?)", st->label,
                              name);
    }
    if (0 != strcmp(e->dtype, "F32")) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: tensor '%s' is %s; loco reads F32",
                              st->label, name, e->dtype);
    }
    bool same = e->ndim == ndim;
    for (int d = 0; d < ndim && same; d++) {
        same = e->shape[d] == shape[d];
    }
    if (!same) {
        char got[96], want[96];
        format_shape(got, sizeof got, e->ndim, e->shape);
        format_shape(want, sizeof want, ndim, shape);
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "%s: tensor '%s' has shape %s, the model expects %s", st->label, name,
                              got, want);
    }
    *out = e;
    return LOCO_OK;
}

static char *copy_string(const char *s) { return NULL == s ? NULL : strdup(s); }

/* Open, verify the digest and check the "format" metadata. */
static loco_status open_checked(loco_safetensors *st, const char *path, size_t expect_floats,
                                const char *format, loco_error *err)
{
    size_t max_bytes = 8 + LOCO_SAFETENSORS_MAX_HEADER + expect_floats * sizeof(float);
    LOCO_TRY(loco_safetensors_open(st, path, max_bytes, err));
    loco_status status = loco_safetensors_verify(st, err);
    const char *found = loco_safetensors_meta(st, "format");
    if (LOCO_OK == status && NULL != found && 0 != strcmp(found, format)) {
        status =
            loco_error_set(err, LOCO_ERR_FORMAT, "%s is a %s file, not %s", path, found, format);
    }
    const char *version = loco_safetensors_meta(st, "version");
    if (LOCO_OK == status && NULL != found && (NULL == version || 0 != strcmp(version, "1"))) {
        status = loco_error_set(err, LOCO_ERR_VERSION,
                                "%s: %s version %s; this loco reads version " FORMAT_VERSION
                                " (use the loco that wrote it)",
                                path, format, NULL != version ? version : "(none)");
    }
    if (LOCO_OK != status) {
        loco_safetensors_close(st);
    }
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Weights */

loco_status loco_checkpoint_save_weights(const char *path, const loco_model_config *cfg,
                                         const loco_tensor_table *table, const float *params,
                                         const char *meta_json, loco_error *err)
{
    char *config = config_to_json(cfg);
    loco_st_tensor *tensors =
        calloc((size_t)(table->count > 0 ? table->count : 1), sizeof *tensors);
    if (NULL == config || NULL == tensors) {
        free(config);
        free(tensors);
        return loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < table->count; i++) {
        const loco_tensor *t = &table->tensors[i];
        tensors[i] = (loco_st_tensor){t->name, t->ndim, t->shape, params + t->offset};
    }
    loco_st_meta meta[4] = {{"format", WEIGHTS_FORMAT},
                            {"version", FORMAT_VERSION},
                            {"loco.model", config},
                            {"loco.meta", meta_json}};
    loco_status status =
        loco_safetensors_write(path, tensors, table->count, meta, NULL != meta_json ? 4 : 3, err);
    free(config);
    free(tensors);
    return status;
}

loco_status loco_checkpoint_read_config(const char *path, loco_model_config *cfg, loco_error *err)
{
    loco_safetensors st;
    /* The configuration is in the header: the size cap only has to admit the file. */
    LOCO_TRY(loco_safetensors_open(&st, path, SIZE_MAX / 2, err));
    const char *text = loco_safetensors_meta(&st, "loco.model");
    loco_status status =
        NULL != text ? config_from_json(text, cfg, path, err)
                     : loco_error_set(err, LOCO_ERR_FORMAT,
                                      "%s holds no loco model configuration (loco.model): it "
                                      "was not written by loco",
                                      path);
    loco_safetensors_close(&st);
    return status;
}

loco_status loco_checkpoint_load_weights(const char *path, const loco_model_config *cfg,
                                         const loco_tensor_table *table, float *params,
                                         char **meta_json, loco_error *err)
{
    if (NULL != meta_json) {
        *meta_json = NULL;
    }
    loco_safetensors st;
    LOCO_TRY(open_checked(&st, path, table->numel, WEIGHTS_FORMAT, err));
    loco_status status = LOCO_OK;
    const char *config = loco_safetensors_meta(&st, "loco.model");
    if (NULL != cfg && NULL != config) {
        loco_model_config stored;
        status = config_from_json(config, &stored, path, err);
        if (LOCO_OK == status) {
            status = config_compare(&stored, cfg, path, err);
        }
    }
    const loco_st_entry **found =
        calloc((size_t)(table->count > 0 ? table->count : 1), sizeof *found);
    if (LOCO_OK == status && NULL == found) {
        status = loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < table->count && LOCO_OK == status; i++) {
        const loco_tensor *t = &table->tensors[i];
        status = expect_tensor(&st, t->name, t->ndim, t->shape, &found[i], err);
    }
    for (int i = 0; i < st.count && LOCO_OK == status; i++) {
        if (loco_tensor_table_find(table, st.entries[i].name) < 0) {
            status = loco_error_set(err, LOCO_ERR_FORMAT,
                                    "%s holds tensor '%s' that this model does not have (saved "
                                    "from another model shape?)",
                                    path, st.entries[i].name);
        }
    }
    for (int i = 0; i < table->count && LOCO_OK == status; i++) {
        status = loco_safetensors_read_f32(&st, found[i], params + table->tensors[i].offset, err);
    }
    if (LOCO_OK == status && NULL != meta_json) {
        const char *meta = loco_safetensors_meta(&st, "loco.meta");
        *meta_json = copy_string(meta);
        if (NULL != meta && NULL == *meta_json) {
            status = loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    free(found);
    loco_safetensors_close(&st);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Training state */

static void params_digest(const loco_tensor_table *table, const float *params, char out[17])
{
    loco_hash_hex(loco_hash64(params, table->numel * sizeof(float), 0), out);
}

/* Names "optim.<slot>.<tensor>" for every (slot, tensor), in one malloc'd block of
 * slots * count names of `stride` bytes each. */
static char *state_names(const loco_optim *opt, const loco_tensor_table *table, size_t stride)
{
    char *names = malloc((size_t)(opt->slots > 0 ? opt->slots : 1) *
                         (size_t)(table->count > 0 ? table->count : 1) * stride);
    if (NULL == names) {
        return NULL;
    }
    for (int s = 0; s < opt->slots; s++) {
        for (int i = 0; i < table->count; i++) {
            snprintf(names + ((size_t)s * table->count + i) * stride, stride, "optim.%s.%s",
                     loco_optim_slot_name(opt, s), table->tensors[i].name);
        }
    }
    return names;
}

#define STATE_NAME_STRIDE (LOCO_TENSOR_NAME_MAX + 32)

loco_status loco_checkpoint_save_state(const char *path, const loco_tensor_table *table,
                                       const float *params, const loco_optim *opt,
                                       const char *state_json, loco_error *err)
{
    if (opt->n != table->numel) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "%s: optimizer over %zu parameters, tensor table of %zu", path,
                              opt->n, table->numel);
    }
    size_t count = (size_t)opt->slots * table->count;
    char *names = state_names(opt, table, STATE_NAME_STRIDE);
    loco_st_tensor *tensors = calloc(count > 0 ? count : 1, sizeof *tensors);
    if (NULL == names || NULL == tensors) {
        free(names);
        free(tensors);
        return loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int s = 0; s < opt->slots; s++) {
        for (int i = 0; i < table->count; i++) {
            const loco_tensor *t = &table->tensors[i];
            size_t k = (size_t)s * table->count + i;
            tensors[k] = (loco_st_tensor){names + k * STATE_NAME_STRIDE, t->ndim, t->shape,
                                          loco_optim_slot(opt, s) + t->offset};
        }
    }
    char step[32], digest[17];
    snprintf(step, sizeof step, "%" PRId64, opt->step);
    params_digest(table, params, digest);
    loco_st_meta meta[6] = {{"format", STATE_FORMAT},
                            {"version", FORMAT_VERSION},
                            {"optim.kind", loco_optim_kind_name(opt->params.kind)},
                            {"optim.step", step},
                            {"params.xxh64", digest},
                            {"loco.state", state_json}};
    loco_status status =
        loco_safetensors_write(path, tensors, (int)count, meta, NULL != state_json ? 6 : 5, err);
    free(names);
    free(tensors);
    return status;
}

loco_status loco_checkpoint_load_state(const char *path, const loco_tensor_table *table,
                                       const float *params, loco_optim *opt, char **state_json,
                                       loco_error *err)
{
    if (NULL != state_json) {
        *state_json = NULL;
    }
    if (opt->n != table->numel) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "%s: optimizer over %zu parameters, tensor table of %zu", path,
                              opt->n, table->numel);
    }
    loco_safetensors st;
    LOCO_TRY(open_checked(&st, path, (size_t)opt->slots * table->numel, STATE_FORMAT, err));
    loco_status status = LOCO_OK;
    const char *format = loco_safetensors_meta(&st, "format");
    const char *kind = loco_safetensors_meta(&st, "optim.kind");
    const char *step = loco_safetensors_meta(&st, "optim.step");
    const char *digest = loco_safetensors_meta(&st, "params.xxh64");
    if (NULL == format || NULL == kind || NULL == step || NULL == digest) {
        status = loco_error_set(err, LOCO_ERR_FORMAT,
                                "%s is not a loco training-state file (format, optim.kind, "
                                "optim.step or params.xxh64 missing)",
                                path);
    } else if (0 != strcmp(kind, loco_optim_kind_name(opt->params.kind))) {
        status =
            loco_error_set(err, LOCO_ERR_FORMAT, "%s holds %s state; this run uses %s (optim.kind)",
                           path, kind, loco_optim_kind_name(opt->params.kind));
    }
    char *end = NULL;
    errno = 0;
    long long step_value = LOCO_OK == status ? strtoll(step, &end, 10) : 0;
    if (LOCO_OK == status && (0 != errno || end == step || '\0' != *end || step_value < 0)) {
        status = loco_error_set(err, LOCO_ERR_FORMAT, "%s: optim.step '%s' is not a step number",
                                path, step);
    }
    char want[17];
    params_digest(table, params, want);
    if (LOCO_OK == status && 0 != strcmp(want, digest)) {
        status = loco_error_set(err, LOCO_ERR_CHECKSUM,
                                "%s was saved with other weights (parameter digest %s, loaded "
                                "weights %s): load the weights file saved with it first",
                                path, digest, want);
    }
    if (LOCO_OK == status && st.count != opt->slots * table->count) {
        status = loco_error_set(err, LOCO_ERR_FORMAT,
                                "%s holds %d state tensors; this optimizer has %d x %d", path,
                                st.count, opt->slots, table->count);
    }
    char *names = LOCO_OK == status ? state_names(opt, table, STATE_NAME_STRIDE) : NULL;
    size_t count = (size_t)opt->slots * table->count;
    const loco_st_entry **found = calloc(count > 0 ? count : 1, sizeof *found);
    if (LOCO_OK == status && (NULL == names || NULL == found)) {
        status = loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", path);
    }
    for (size_t k = 0; k < count && LOCO_OK == status; k++) {
        const loco_tensor *t = &table->tensors[k % table->count];
        status =
            expect_tensor(&st, names + k * STATE_NAME_STRIDE, t->ndim, t->shape, &found[k], err);
    }
    if (LOCO_OK == status && NULL != state_json) {
        const char *user = loco_safetensors_meta(&st, "loco.state");
        *state_json = copy_string(user);
        if (NULL != user && NULL == *state_json) {
            status = loco_error_set(err, LOCO_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    for (size_t k = 0; k < count && LOCO_OK == status; k++) {
        size_t s = k / table->count;
        const loco_tensor *t = &table->tensors[k % table->count];
        status =
            loco_safetensors_read_f32(&st, found[k], loco_optim_slot(opt, (int)s) + t->offset, err);
    }
    if (LOCO_OK == status) {
        opt->step = step_value;
    }
    free(names);
    free(found);
    loco_safetensors_close(&st);
    return status;
}
