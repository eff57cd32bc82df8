/* src/checkpoint.h — checkpoints as safetensors files.
 *
 * Two files per checkpoint:
 *   weights  (e.g. model.safetensors): one F32 tensor per entry of the model's tensor table, under
 *            its table name, readable by any safetensors reader. __metadata__ holds
 *            "format": "loco-weights", "version": "1", "loco.model": the model configuration as
 *            JSON (so eval/sample can rebuild the model from the file alone), "loco.meta": the
 *            caller's JSON (opaque), and "loco.data_xxh64": a digest of the data section.
 *   training state (e.g. state.safetensors): the optimizer's state vectors as tensors named
 *            "optim.<slot>.<table name>" (slot = exp_avg, exp_avg_sq or momentum_buffer), and
 *            metadata "format": "loco-train-state", "optim.kind", "optim.step", "params.xxh64"
 *            (digest of the parameters it belongs to), "loco.state" (the caller's JSON: step, RNG
 *            state, data cursor — opaque here) and the data digest.
 * Loading weights, then state, restores a run bit for bit. Both are written atomically (temporary
 * file, fsync, rename): a crash leaves the previous checkpoint intact.
 *
 * Reading is hostile-input safe: the header length, JSON, dtypes, shapes and every data offset are
 * checked before any byte is copied, and the data digest (when present) catches corrupt bytes.
 * Every refusal names the file and the problem.
 *
 * The metadata strings are JSON texts stored as safetensors metadata values (which must be
 * strings); "loco.meta" / "loco.state" come back exactly as given.
 */
#ifndef LOCO_SRC_CHECKPOINT_H
#define LOCO_SRC_CHECKPOINT_H

#include "base/base.h"
#include "optim/optim.h"
#include "src/model.h"

#include <stdint.h>

/* ---------------------------------------------------------------------------------------------
 * The safetensors format */

#define LOCO_SAFETENSORS_MAX_HEADER (100u << 20) /* as the reference implementation */

/* One tensor in a file being read. */
typedef struct loco_st_entry {
    const char *name; /* NUL-terminated, owned by the file object */
    char dtype[16];   /* "F32", "BF16", ... */
    int ndim;         /* 0..LOCO_TENSOR_MAX_DIMS */
    int64_t shape[LOCO_TENSOR_MAX_DIMS];
    size_t numel;
    size_t begin, end; /* byte range within the data section */
} loco_st_entry;

/* A parsed safetensors file (or buffer). */
typedef struct loco_safetensors {
    char label[256];      /* the path, for messages */
    const uint8_t *bytes; /* the whole file */
    size_t size;
    size_t data_start; /* 8 + header length */
    loco_json_doc header;
    const loco_json_node *metadata; /* the __metadata__ object, or NULL */
    loco_st_entry *entries;         /* (count), in header order */
    int count;
    uint8_t *owned; /* the file buffer when opened from a path */
} loco_safetensors;

/* Read and validate the file at path (at most max_bytes). LOCO_ERR_NOT_FOUND/IO if unreadable,
 * LOCO_ERR_TRUNCATED if it ends early, LOCO_ERR_FORMAT if malformed; err names path and problem.
 * On failure st is left empty (closing it is still safe). */
loco_status loco_safetensors_open(loco_safetensors *st, const char *path, size_t max_bytes,
                                  loco_error *err);
/* The same on bytes in memory (not copied: they must outlive st). label names them in errors. */
loco_status loco_safetensors_parse(loco_safetensors *st, const uint8_t *bytes, size_t size,
                                   const char *label, loco_error *err);
void loco_safetensors_close(loco_safetensors *st);

/* The entry called name, or NULL. */
const loco_st_entry *loco_safetensors_find(const loco_safetensors *st, const char *name);
/* The string metadata value of key, or NULL if absent. */
const char *loco_safetensors_meta(const loco_safetensors *st, const char *key);
/* Copy an F32 entry's data into dst (numel floats). LOCO_ERR_FORMAT if its dtype is not F32. */
loco_status loco_safetensors_read_f32(const loco_safetensors *st, const loco_st_entry *e,
                                      float *dst, loco_error *err);
/* Check "loco.data_xxh64" against the data section: LOCO_ERR_CHECKSUM on mismatch; LOCO_OK if it
 * matches or the file has no digest (a file from another writer). */
loco_status loco_safetensors_verify(const loco_safetensors *st, loco_error *err);

/* A tensor to write: numel = product of shape, data F32. */
typedef struct loco_st_tensor {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;
} loco_st_tensor;

/* A metadata pair (both strings). */
typedef struct loco_st_meta {
    const char *key;
    const char *value;
} loco_st_meta;

/* Write tensors (in order) and metadata to path atomically, adding "loco.data_xxh64". The header
 * is space-padded so the data section starts 8-byte aligned. */
loco_status loco_safetensors_write(const char *path, const loco_st_tensor *tensors, int count,
                                   const loco_st_meta *meta, int meta_count, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Model weights */

/* Save the parameters (described by table) of a model with configuration cfg. meta_json (may be
 * NULL) is stored verbatim as "loco.meta". */
loco_status loco_checkpoint_save_weights(const char *path, const loco_model_config *cfg,
                                         const loco_tensor_table *table, const float *params,
                                         const char *meta_json, loco_error *err);

/* Read the model configuration stored in a weights file. LOCO_ERR_FORMAT if the file has none
 * (not written by loco) or it is malformed. */
loco_status loco_checkpoint_read_config(const char *path, loco_model_config *cfg, loco_error *err);

/* Load weights into params (table->numel floats). Every tensor of the table must be present with
 * its exact shape, and the file must hold no other tensor; with cfg non-NULL the stored
 * configuration (if any) must equal cfg. On any refusal params is unchanged. meta_json (may be
 * NULL) receives a malloc'd copy of "loco.meta" (NULL if absent); free it. */
loco_status loco_checkpoint_load_weights(const char *path, const loco_model_config *cfg,
                                         const loco_tensor_table *table, float *params,
                                         char **meta_json, loco_error *err);

/* ---------------------------------------------------------------------------------------------
 * Training state */

/* Save the optimizer state (slots over table) with the digest of params and the caller's JSON
 * (state_json, may be NULL) as "loco.state". */
loco_status loco_checkpoint_save_state(const char *path, const loco_tensor_table *table,
                                       const float *params, const loco_optim *opt,
                                       const char *state_json, loco_error *err);

/* Restore opt (its kind and size must match the file's) and return the caller's JSON in
 * *state_json (malloc'd, NULL if absent; may be NULL to skip). params must already hold the
 * weights saved with this state: a digest mismatch is refused (LOCO_ERR_CHECKSUM) so a state file
 * is never paired with other weights. On any refusal opt is unchanged. */
loco_status loco_checkpoint_load_state(const char *path, const loco_tensor_table *table,
                                       const float *params, loco_optim *opt, char **state_json,
                                       loco_error *err);

#endif /* LOCO_SRC_CHECKPOINT_H */
