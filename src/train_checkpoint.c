/* src/train_checkpoint.c — checkpoints of a worker and `loco train --resume`.
 *
 * checkpoints/step_NNNNNNN/ holds, per worker (rank 0 without a suffix, others .rankR):
 *   model.safetensors  the replica's weights (+ the training state JSON as metadata)
 *   state.safetensors  the inner optimizer's moments
 *   sync.safetensors   the sync strategy's fp32 buffers (loco_sync_buffers: theta_global, outer
 *                      momentum, EF residuals, DeMo momentum, ...), one tensor per buffer; its
 *                      integer buffers (round schedule) travel in the state JSON under "sync".
 * Operations in flight are completed first (loco_sync_quiesce). Rank 0 then names the
 * directory in checkpoints/latest. Resuming restores all of it, so a resumed run is
 * bit-identical to an uninterrupted one.
 */
#include "src/checkpoint.h"
#include "src/train_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void checkpoint_file(const char *dir, const char *kind, int rank, char *out, size_t cap)
{
    if (0 == rank) {
        snprintf(out, cap, "%s/%s.safetensors", dir, kind);
    } else {
        snprintf(out, cap, "%s/%s.rank%d.safetensors", dir, kind, rank);
    }
}

/* The strategy's buffers, allocated (free the array). */
static int sync_buffers(worker *w, loco_sync_buffer **out)
{
    int n = loco_sync_buffers(w->sync, NULL, 0);
    *out = calloc((size_t)(n > 0 ? n : 1), sizeof **out);
    if (NULL == *out) {
        return -1;
    }
    return loco_sync_buffers(w->sync, *out, n);
}

/* The resumable position of this worker as JSON (integer sync buffers included). */
static char *state_json(const worker *w, const loco_sync_buffer *bufs, int n_bufs)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (NULL == mem) {
        return NULL;
    }
    loco_loader_state ls = loco_loader_get_state(&w->loader);
    loco_json_writer jw;
    loco_json_writer_init(&jw, mem, false);
    loco_json_begin_object(&jw);
    loco_json_key(&jw, "step");
    loco_json_int(&jw, w->step);
    loco_json_key(&jw, "rank");
    loco_json_int(&jw, w->rank);
    loco_json_key(&jw, "world");
    loco_json_int(&jw, w->world);
    loco_json_key(&jw, "strategy");
    loco_json_string(&jw, loco_sync_strategy_name(w->cfg.sync.strategy));
    loco_json_key(&jw, "loader_cursor");
    loco_json_uint(&jw, ls.cursor);
    loco_json_key(&jw, "loader_epoch");
    loco_json_uint(&jw, ls.epoch);
    loco_json_key(&jw, "nonfinite");
    loco_json_int(&jw, w->nonfinite);
    loco_json_key(&jw, "syncs");
    loco_json_int(&jw, w->syncs);
    loco_json_key(&jw, "tokens");
    loco_json_number(&jw, w->tokens);
    loco_json_key(&jw, "seed");
    loco_json_uint(&jw, w->cfg.run.seed);
    loco_json_key(&jw, "sync");
    loco_json_begin_object(&jw);
    for (int i = 0; i < n_bufs; i++) {
        if (LOCO_SYNC_I64 != bufs[i].dtype) {
            continue;
        }
        loco_json_key(&jw, bufs[i].name);
        loco_json_begin_array(&jw);
        for (size_t k = 0; k < bufs[i].count; k++) {
            loco_json_int(&jw, ((const int64_t *)bufs[i].data)[k]);
        }
        loco_json_end_array(&jw);
    }
    loco_json_end_object(&jw);
    loco_json_end_object(&jw);
    fclose(mem);
    return text;
}

static loco_status save_sync_tensors(const char *path, const loco_sync_buffer *bufs, int n,
                                     loco_error *err)
{
    loco_st_tensor *tensors = calloc((size_t)(n > 0 ? n : 1), sizeof *tensors);
    int64_t *shapes = calloc((size_t)(n > 0 ? n : 1), sizeof *shapes);
    if (NULL == tensors || NULL == shapes) {
        free(tensors);
        free(shapes);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory writing %s", path);
    }
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (LOCO_SYNC_F32 == bufs[i].dtype) {
            shapes[count] = (int64_t)bufs[i].count;
            tensors[count] = (loco_st_tensor){bufs[i].name, 1, &shapes[count], bufs[i].data};
            count++;
        }
    }
    loco_st_meta meta[1] = {{"format", "loco-sync-state"}};
    loco_status st = loco_safetensors_write(path, tensors, count, meta, 1, err);
    free(tensors);
    free(shapes);
    return st;
}

loco_status train_save_checkpoint(worker *w, loco_error *err)
{
    loco_status quiet;
    do {
        quiet = loco_sync_quiesce(w->sync, err);
    } while (train_repeat_after_loss(w, &quiet, err));
    LOCO_TRY(quiet);
    LOCO_TRY(train_device_to_host(w, err)); /* a GPU worker's parameters and moments */
    char dir[LOCO_PATH_MAX + 64], path[LOCO_PATH_MAX + 128];
    snprintf(dir, sizeof dir, "%s/checkpoints/step_%07lld", w->cfg.run.dir, (long long)w->step);
    LOCO_TRY(loco_mkdir_p(dir, err));
    loco_sync_buffer *bufs = NULL;
    int n_bufs = sync_buffers(w, &bufs);
    char *json = n_bufs >= 0 ? state_json(w, bufs, n_bufs) : NULL;
    if (NULL == json) {
        free(bufs);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory writing a checkpoint");
    }
    const loco_tensor_table *table = loco_model_tensors(w->model);
    const float *params = loco_model_params(w->model);
    checkpoint_file(dir, "model", w->rank, path, sizeof path);
    loco_status st = loco_checkpoint_save_weights(path, &w->cfg.model, table, params, json, err);
    if (LOCO_OK == st) {
        checkpoint_file(dir, "state", w->rank, path, sizeof path);
        st = loco_checkpoint_save_state(path, table, params, &w->optim, json, err);
    }
    if (LOCO_OK == st && n_bufs > 0) {
        checkpoint_file(dir, "sync", w->rank, path, sizeof path);
        st = save_sync_tensors(path, bufs, n_bufs, err);
    }
    free(json);
    free(bufs);
    if (LOCO_OK == st && 0 == w->rank) {
        char latest[LOCO_PATH_MAX + 32], name[64];
        snprintf(latest, sizeof latest, "%s/checkpoints/latest", w->cfg.run.dir);
        int n = snprintf(name, sizeof name, "step_%07lld\n", (long long)w->step);
        st = loco_file_write_atomic(latest, name, (size_t)n, err);
    }
    return st;
}

static loco_status json_int_field(const loco_json_doc *doc, const char *key, int64_t *out,
                                  const char *path, loco_error *err)
{
    const loco_json_node *n = loco_json_get(doc, loco_json_root(doc), key);
    if (NULL == n || LOCO_JSON_NUMBER != n->type || !n->is_integer) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: training state lacks integer '%s'", path,
                              key);
    }
    *out = n->integer;
    return LOCO_OK;
}

/* Fill the strategy's buffers from DIR's sync file (fp32) and the state JSON (integers). */
static loco_status restore_sync(worker *w, const char *dir, const loco_json_doc *doc,
                                const char *json_path, loco_error *err)
{
    loco_sync_buffer *bufs = NULL;
    int n = sync_buffers(w, &bufs);
    if (n < 0) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
    }
    loco_status st = LOCO_OK;
    const loco_json_node *ints = loco_json_get(doc, loco_json_root(doc), "sync");
    for (int i = 0; LOCO_OK == st && i < n; i++) {
        if (LOCO_SYNC_I64 != bufs[i].dtype) {
            continue;
        }
        const loco_json_node *arr = NULL != ints ? loco_json_get(doc, ints, bufs[i].name) : NULL;
        size_t k = 0;
        for (const loco_json_node *e = NULL != arr ? loco_json_child(doc, arr) : NULL;
             NULL != e && k < bufs[i].count; e = loco_json_next(doc, e), k++) {
            if (LOCO_JSON_NUMBER != e->type || !e->is_integer) {
                break;
            }
            ((int64_t *)bufs[i].data)[k] = e->integer;
        }
        if (k != bufs[i].count) {
            st = loco_error_set(err, LOCO_ERR_FORMAT,
                                "%s: the sync state '%s' is missing or has the wrong length "
                                "(want %zu integers): saved by another strategy or version?",
                                json_path, bufs[i].name, bufs[i].count);
        }
    }
    bool any_f32 = false;
    for (int i = 0; i < n; i++) {
        any_f32 = any_f32 || LOCO_SYNC_F32 == bufs[i].dtype;
    }
    if (LOCO_OK == st && any_f32) {
        char path[LOCO_PATH_MAX + 400];
        checkpoint_file(dir, "sync", w->rank, path, sizeof path);
        loco_safetensors sf;
        st = loco_safetensors_open(&sf, path, (size_t)1 << 40, err);
        if (LOCO_OK == st) {
            st = loco_safetensors_verify(&sf, err);
        }
        for (int i = 0; LOCO_OK == st && i < n; i++) {
            if (LOCO_SYNC_F32 != bufs[i].dtype) {
                continue;
            }
            const loco_st_entry *e = loco_safetensors_find(&sf, bufs[i].name);
            if (NULL == e || e->numel != bufs[i].count) {
                st = loco_error_set(err, LOCO_ERR_FORMAT,
                                    "%s: tensor '%s' is missing or not %zu floats: saved by "
                                    "another strategy or model?",
                                    path, bufs[i].name, bufs[i].count);
            } else {
                st = loco_safetensors_read_f32(&sf, e, bufs[i].data, err);
            }
        }
        loco_safetensors_close(&sf);
    }
    free(bufs);
    if (LOCO_OK == st) {
        loco_sync_restored(w->sync);
    }
    return st;
}

loco_status train_resume_checkpoint(worker *w, loco_error *err)
{
    char latest[LOCO_PATH_MAX + 32];
    snprintf(latest, sizeof latest, "%s/checkpoints/latest", w->cfg.run.dir);
    char *name = NULL;
    size_t len = 0;
    loco_status st = loco_file_read_all(latest, 256, &name, &len, err);
    if (LOCO_ERR_NOT_FOUND == st) {
        loco_error_clear(err);
        return loco_error_set(err, LOCO_ERR_NOT_FOUND,
                              "--resume: %s does not exist: this run has no checkpoint yet "
                              "(drop --resume to start afresh)",
                              latest);
    }
    LOCO_TRY(st);
    name[strcspn(name, "\n")] = '\0';
    if (NULL != strchr(name, '/') || 0 != strncmp(name, "step_", 5)) {
        free(name);
        return loco_error_set(err, LOCO_ERR_FORMAT, "%s: does not name a checkpoint", latest);
    }
    char dir[LOCO_PATH_MAX + 300], path[LOCO_PATH_MAX + 400];
    snprintf(dir, sizeof dir, "%s/checkpoints/%s", w->cfg.run.dir, name);
    free(name);
    const loco_tensor_table *table = loco_model_tensors(w->model);
    float *params = loco_model_params(w->model);
    checkpoint_file(dir, "model", w->rank, path, sizeof path);
    LOCO_TRY(loco_checkpoint_load_weights(path, &w->cfg.model, table, params, NULL, err));
    checkpoint_file(dir, "state", w->rank, path, sizeof path);
    char *json = NULL;
    LOCO_TRY(loco_checkpoint_load_state(path, table, params, &w->optim, &json, err));
    loco_json_doc doc;
    st = NULL == json ? loco_error_set(err, LOCO_ERR_FORMAT, "%s: no training state", path)
                      : loco_json_parse(&doc, json, strlen(json), NULL, err);
    free(json);
    LOCO_TRY(st);
    int64_t step = 0, cursor = 0, epoch = 0, nonfinite = 0, world = 0, syncs = 0;
    st = json_int_field(&doc, "step", &step, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "loader_cursor", &cursor, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "loader_epoch", &epoch, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "nonfinite", &nonfinite, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "world", &world, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "syncs", &syncs, path, err);
    const loco_json_node *strategy = loco_json_get(&doc, loco_json_root(&doc), "strategy");
    const char *want = loco_sync_strategy_name(w->cfg.sync.strategy);
    if (LOCO_OK == st && (NULL == strategy || LOCO_JSON_STRING != strategy->type ||
                          0 != strcmp(strategy->str, want))) {
        st = loco_error_set(err, LOCO_ERR_CONFIG,
                            "%s: saved by a run with another sync.strategy than %s; resume with "
                            "the same configuration",
                            path, want);
    }
    if (LOCO_OK == st && world != w->world) {
        st = loco_error_set(err, LOCO_ERR_CONFIG,
                            "%s: saved by a run of %lld workers, this run has %d; resume with the "
                            "same worker count",
                            path, (long long)world, w->world);
    }
    if (LOCO_OK == st && step > w->cfg.train.steps) {
        st = loco_error_set(err, LOCO_ERR_CONFIG,
                            "%s: already at step %lld, past train.steps %d; raise train.steps",
                            path, (long long)step, w->cfg.train.steps);
    }
    if (LOCO_OK == st) {
        st = restore_sync(w, dir, &doc, path, err);
    }
    loco_json_free(&doc);
    LOCO_TRY(st);
    LOCO_TRY(train_device_from_host(w, err)); /* a GPU worker: parameters and moments up */
    w->step = step;
    w->nonfinite = nonfinite;
    w->syncs = syncs;
    w->tokens = (double)step * w->cfg.train.batch * w->cfg.train.seq_len;
    loco_loader_set_state(&w->loader, (loco_loader_state){(uint64_t)cursor, (uint64_t)epoch});
    if (0 == w->rank) {
        LOCO_INFO("resumed %s at step %lld", dir, (long long)step);
    }
    return LOCO_OK;
}
