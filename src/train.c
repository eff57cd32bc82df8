/* src/train.c — `loco train CFG`: the worker loop.
 *
 * One process trains one replica: read the config, open this worker's part of the data, build
 * the model and the inner optimizer, then per step: next batch -> forward -> backward -> clip ->
 * optimizer step, with periodic validation, checkpoints and metrics. A non-finite loss or
 * gradient norm skips the step (an event in metrics.jsonl); more than train.max_nonfinite
 * skipped steps stop the run with an error.
 *
 * Outputs in run.dir: config.yaml (resolved), metrics.jsonl, checkpoints/step_NNNNNNN/ with
 * model.safetensors and state.safetensors (checkpoints/latest names the newest), run.json.
 * `--resume` continues from checkpoints/latest bit-identically: weights, optimizer moments, step,
 * data cursor and skipped-step count are all restored.
 */
#include "optim/optim.h"
#include "src/checkpoint.h"
#include "src/commands.h"
#include "src/config.h"
#include "src/data.h"
#include "src/metrics.h"
#include "src/model.h"

#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRAIN_MAX_OVERRIDES 64

/* Everything one worker holds while training. */
typedef struct worker {
    loco_config cfg;
    int rank, world;
    loco_token_file train_file, val_file;
    loco_loader loader;     /* this worker's part of train.tok */
    uint16_t *inputs;       /* (B, T) */
    uint16_t *targets;      /* (B, T) */
    loco_model *model;
    loco_optim optim;
    loco_metrics metrics;
    int64_t step;           /* optimizer steps done (the next step's index) */
    int64_t nonfinite;      /* steps skipped for a non-finite loss or gradient */
    double tokens;          /* tokens this worker trained on (skipped steps included) */
    double last_loss;
    double last_val_loss;
    double start_s;
    bool tty;               /* progress line on a terminal */
} worker;

/* ---------------------------------------------------------------------------------------------
 * Command line */

typedef struct train_args {
    const char *config_path;
    const char *overrides[TRAIN_MAX_OVERRIDES];
    int n_overrides;
    bool resume;
} train_args;

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: loco train CONFIG.yaml [--set section.key=value]... [--resume]\n\n"
            "Train the model CONFIG describes. Outputs go to run.dir: config.yaml (the resolved\n"
            "configuration), metrics.jsonl (one JSON object per logged step and evaluation),\n"
            "checkpoints/ (safetensors weights + optimizer state) and run.json (the summary).\n\n"
            "options:\n"
            "  --set KEY=VALUE   override a config key (repeatable), e.g. --set train.steps=50\n"
            "  --resume          continue from run.dir/checkpoints/latest, bit-identically\n"
            "  --help-config     list every config key with its default and allowed values\n"
            "  -h, --help        this help\n\n"
            "exit codes: 0 trained, 1 runtime failure (data, non-finite losses, I/O), 2 usage or\n"
            "configuration error\n");
}

static int parse_train_args(int argc, char **argv, train_args *args)
{
    memset(args, 0, sizeof *args);
    static const struct option options[] = {{"set", required_argument, NULL, 's'},
                                            {"resume", no_argument, NULL, 'r'},
                                            {"help-config", no_argument, NULL, 'c'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while (-1 != (opt = getopt_long(argc, argv, "s:rh", options, NULL))) {
        switch (opt) {
        case 's':
            if (args->n_overrides == TRAIN_MAX_OVERRIDES) {
                fprintf(stderr, "loco train: at most %d --set options\n", TRAIN_MAX_OVERRIDES);
                return 2;
            }
            args->overrides[args->n_overrides++] = optarg;
            break;
        case 'r': args->resume = true; break;
        case 'c': loco_config_print_schema(stdout); return 0;
        case 'h': train_usage(stdout); return 0;
        default: train_usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "loco train: expected one CONFIG.yaml\n\n");
        train_usage(stderr);
        return 2;
    }
    args->config_path = argv[optind];
    return -1; /* continue */
}

/* ---------------------------------------------------------------------------------------------
 * Set-up */

static loco_status open_data(worker *w, loco_error *err)
{
    char path[LOCO_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/train.tok", w->cfg.data.path);
    LOCO_TRY(loco_token_file_open(&w->train_file, path, err));
    snprintf(path, sizeof path, "%s/val.tok", w->cfg.data.path);
    LOCO_TRY(loco_token_file_open(&w->val_file, path, err));
    if (w->train_file.vocab > (uint32_t)w->cfg.model.vocab) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: the data's vocabulary is %u but model.vocab is %d; set "
                              "model.vocab to at least %u",
                              w->cfg.file, w->train_file.vocab, w->cfg.model.vocab,
                              w->train_file.vocab);
    }
    const loco_train_params *t = &w->cfg.train;
    return loco_loader_init(&w->loader, &w->train_file, w->cfg.data.partition, w->cfg.data.block,
                            w->rank, w->world, t->batch, t->seq_len, err);
}

static loco_status worker_init(worker *w, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    if (t->threads > 0) {
        omp_set_num_threads(t->threads);
    }
    LOCO_TRY(loco_mkdir_p(w->cfg.run.dir, err));
    if (0 == w->rank) {
        LOCO_TRY(loco_config_save(&w->cfg, w->cfg.run.dir, err));
    }
    LOCO_TRY(open_data(w, err));
    size_t tokens = (size_t)t->batch * (size_t)t->seq_len;
    w->inputs = malloc(tokens * sizeof *w->inputs);
    w->targets = malloc(tokens * sizeof *w->targets);
    if (NULL == w->inputs || NULL == w->targets) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for batches");
    }
    LOCO_TRY(loco_model_init(&w->model, &w->cfg.model, t->batch, t->seq_len, err));
    loco_model_init_weights(w->model, w->cfg.run.seed);
    LOCO_TRY(loco_optim_init(&w->optim, &w->cfg.optim, loco_model_num_params(w->model), err));
    LOCO_TRY(loco_metrics_open(&w->metrics, w->cfg.run.dir, w->rank, err));
    w->last_loss = NAN;
    w->last_val_loss = NAN;
    w->tty = isatty(STDERR_FILENO);
    w->start_s = loco_now_s();
    return LOCO_OK;
}

static void worker_free(worker *w)
{
    loco_metrics_close(&w->metrics);
    loco_optim_free(&w->optim);
    loco_model_free(w->model);
    free(w->inputs);
    free(w->targets);
    loco_loader_free(&w->loader);
    loco_token_file_close(&w->train_file);
    loco_token_file_close(&w->val_file);
}

/* ---------------------------------------------------------------------------------------------
 * Checkpoints */

static void checkpoint_dir(const worker *w, int64_t step, char *out, size_t cap)
{
    snprintf(out, cap, "%s/checkpoints/step_%07lld", w->cfg.run.dir, (long long)step);
}

static void checkpoint_file(const char *dir, const char *kind, int rank, char *out, size_t cap)
{
    if (0 == rank) {
        snprintf(out, cap, "%s/%s.safetensors", dir, kind);
    } else {
        snprintf(out, cap, "%s/%s.rank%d.safetensors", dir, kind, rank);
    }
}

/* The resumable position of this worker as JSON. */
static char *state_json(const worker *w)
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
    loco_json_key(&jw, "loader_cursor");
    loco_json_uint(&jw, ls.cursor);
    loco_json_key(&jw, "loader_epoch");
    loco_json_uint(&jw, ls.epoch);
    loco_json_key(&jw, "nonfinite");
    loco_json_int(&jw, w->nonfinite);
    loco_json_key(&jw, "tokens");
    loco_json_number(&jw, w->tokens);
    loco_json_key(&jw, "seed");
    loco_json_uint(&jw, w->cfg.run.seed);
    loco_json_end_object(&jw);
    fclose(mem);
    return text;
}

static loco_status save_checkpoint(worker *w, loco_error *err)
{
    char dir[LOCO_PATH_MAX + 64], path[LOCO_PATH_MAX + 128];
    checkpoint_dir(w, w->step, dir, sizeof dir);
    LOCO_TRY(loco_mkdir_p(dir, err));
    char *json = state_json(w);
    if (NULL == json) {
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
    free(json);
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

/* Restore weights, optimizer state, step, data cursor and counters from checkpoints/latest. */
static loco_status resume_checkpoint(worker *w, loco_error *err)
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
    int64_t step = 0, cursor = 0, epoch = 0, nonfinite = 0, world = 0;
    st = json_int_field(&doc, "step", &step, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "loader_cursor", &cursor, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "loader_epoch", &epoch, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "nonfinite", &nonfinite, path, err);
    if (LOCO_OK == st) st = json_int_field(&doc, "world", &world, path, err);
    loco_json_free(&doc);
    LOCO_TRY(st);
    if (world != w->world) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: saved by a run of %lld workers, this run has %d; resume with "
                              "the same worker count",
                              path, (long long)world, w->world);
    }
    if (step > w->cfg.train.steps) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "%s: already at step %lld, past train.steps %d; raise train.steps",
                              path, (long long)step, w->cfg.train.steps);
    }
    w->step = step;
    w->nonfinite = nonfinite;
    w->tokens = (double)step * w->cfg.train.batch * w->cfg.train.seq_len;
    loco_loader_set_state(&w->loader, (loco_loader_state){(uint64_t)cursor, (uint64_t)epoch});
    LOCO_INFO("resumed %s at step %lld", dir, (long long)step);
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation */

/* Mean loss over the first train.eval_batches batches of val.tok (the same tokens every time,
 * for every worker and strategy). */
static loco_status evaluate(worker *w, double *val_loss, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    loco_loader val;
    LOCO_TRY(loco_loader_init(&val, &w->val_file, LOCO_PARTITION_IID, 1 << 30, 0, 1, t->batch,
                              t->seq_len, err));
    double total = 0;
    loco_status st = LOCO_OK;
    for (int b = 0; b < t->eval_batches && LOCO_OK == st; b++) {
        loco_loader_next(&val, w->inputs, w->targets);
        float loss = NAN;
        st = loco_model_forward(w->model, w->inputs, w->targets, t->batch, t->seq_len, &loss, err);
        total += loss;
    }
    loco_loader_free(&val);
    *val_loss = total / t->eval_batches;
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Progress and metrics */

static void format_eta(double seconds, char *out, size_t cap)
{
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(out, cap, "?");
    } else if (seconds < 60) {
        snprintf(out, cap, "%.0fs", seconds);
    } else if (seconds < 3600) {
        snprintf(out, cap, "%dm%02ds", (int)seconds / 60, (int)seconds % 60);
    } else {
        snprintf(out, cap, "%dh%02dm", (int)seconds / 3600, (int)seconds % 3600 / 60);
    }
}

static void show_progress(worker *w, double tokens_per_s, bool final)
{
    if (0 != w->rank) {
        return;
    }
    double elapsed = loco_now_s() - w->start_s;
    double remaining = (double)(w->cfg.train.steps - w->step);
    double per_step = w->step > 0 ? elapsed / (double)w->step : NAN;
    char eta[32];
    format_eta(remaining * per_step, eta, sizeof eta);
    char val[32] = "";
    if (isfinite(w->last_val_loss)) {
        snprintf(val, sizeof val, " | val %.4f", w->last_val_loss);
    }
    char line[256];
    snprintf(line, sizeof line, "step %lld/%d | loss %.4f%s | %.0f tok/s | ETA %s",
             (long long)w->step, w->cfg.train.steps, w->last_loss, val, tokens_per_s, eta);
    if (w->tty) {
        fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    } else {
        LOCO_INFO("%s", line);
    }
}

static loco_status log_step(worker *w, float lr, double grad_norm, double tokens_per_s)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "step");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    loco_json_key(jw, "loss");
    loco_json_number(jw, w->last_loss);
    loco_json_key(jw, "lr");
    loco_json_number(jw, lr);
    loco_json_key(jw, "grad_norm");
    loco_json_number(jw, grad_norm);
    loco_json_key(jw, "tokens");
    loco_json_number(jw, w->tokens);
    loco_json_key(jw, "tokens_per_s");
    loco_json_number(jw, tokens_per_s);
    loco_json_key(jw, "bytes_sent");
    loco_json_uint(jw, 0);
    loco_json_key(jw, "bytes_received");
    loco_json_uint(jw, 0);
    loco_json_key(jw, "epoch");
    loco_json_uint(jw, 0);
    loco_json_key(jw, "world");
    loco_json_int(jw, w->world);
    loco_json_key(jw, "retries");
    loco_json_uint(jw, 0);
    loco_json_key(jw, "data_epoch");
    loco_json_uint(jw, w->loader.epoch);
    return loco_metrics_end(&w->metrics);
}

static loco_status log_eval(worker *w)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "eval");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    loco_json_key(jw, "val_loss");
    loco_json_number(jw, w->last_val_loss);
    loco_json_key(jw, "tokens");
    loco_json_number(jw, w->tokens);
    loco_json_key(jw, "tokens_total");
    loco_json_number(jw, w->tokens * w->world);
    loco_json_key(jw, "bytes_sent");
    loco_json_uint(jw, 0);
    loco_json_key(jw, "bytes_received");
    loco_json_uint(jw, 0);
    return loco_metrics_end(&w->metrics);
}

static loco_status log_nonfinite(worker *w, double loss, double grad_norm)
{
    loco_json_writer *jw = loco_metrics_begin(&w->metrics, "nonfinite");
    loco_json_key(jw, "step");
    loco_json_int(jw, w->step);
    loco_json_key(jw, "loss");
    loco_json_number(jw, loss);
    loco_json_key(jw, "grad_norm");
    loco_json_number(jw, grad_norm);
    loco_json_key(jw, "skipped_total");
    loco_json_int(jw, w->nonfinite);
    return loco_metrics_end(&w->metrics);
}

/* ---------------------------------------------------------------------------------------------
 * The loop */

/* One optimizer step on the next batch. A non-finite loss or gradient skips the update. */
static loco_status train_step(worker *w, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    loco_loader_next(&w->loader, w->inputs, w->targets);
    float loss = NAN;
    LOCO_TRY(loco_model_forward(w->model, w->inputs, w->targets, t->batch, t->seq_len, &loss, err));
    w->tokens += (double)t->batch * t->seq_len;
    loco_model_zero_grad(w->model);
    double grad_norm = NAN;
    loco_status st = LOCO_ERR_NONFINITE;
    if (isfinite(loss)) {
        LOCO_TRY(loco_model_backward(w->model, err));
        loco_error clip_err = {0};
        st = loco_grad_clip(loco_model_grads(w->model), loco_model_num_params(w->model),
                            w->cfg.optim.grad_clip, &grad_norm, &clip_err);
    }
    float lr = loco_optim_lr(&w->cfg.optim, w->step);
    if (LOCO_ERR_NONFINITE == st) {
        w->nonfinite++;
        LOCO_WARN("step %lld: non-finite %s (%g); update skipped (%lld of at most %d)",
                  (long long)w->step, isfinite(loss) ? "gradient norm" : "loss",
                  isfinite(loss) ? grad_norm : (double)loss, (long long)w->nonfinite,
                  t->max_nonfinite);
        LOCO_TRY(log_nonfinite(w, loss, grad_norm));
        if (w->nonfinite > t->max_nonfinite) {
            return loco_error_set(err, LOCO_ERR_NONFINITE,
                                  "%lld steps had a non-finite loss or gradient (limit "
                                  "train.max_nonfinite = %d); lower optim.lr or raise "
                                  "optim.warmup_steps",
                                  (long long)w->nonfinite, t->max_nonfinite);
        }
    } else {
        LOCO_TRY(st);
        LOCO_TRY(loco_optim_step(&w->optim, loco_model_params(w->model),
                                 loco_model_grads(w->model), lr, loco_model_tensors(w->model),
                                 err));
    }
    w->last_loss = loss;
    w->step++;
    return LOCO_OK;
}

static loco_status train_loop(worker *w, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    w->start_s = loco_now_s();
    double window_start = w->start_s;
    double window_tokens = 0;
    int64_t first_step = w->step;
    while (w->step < t->steps) {
        LOCO_TRY(train_step(w, err));
        window_tokens += (double)t->batch * t->seq_len;
        bool last = w->step == t->steps;
        if (0 == w->step % t->log_every || last) {
            double now = loco_now_s();
            double tokens_per_s = window_tokens / fmax(now - window_start, 1e-9);
            window_start = now;
            window_tokens = 0;
            float lr = loco_optim_lr(&w->cfg.optim, w->step - 1);
            LOCO_TRY(log_step(w, lr, NAN, tokens_per_s));
            show_progress(w, tokens_per_s, false);
        }
        if ((t->eval_every > 0 && 0 == w->step % t->eval_every) || last) {
            LOCO_TRY(evaluate(w, &w->last_val_loss, err));
            LOCO_TRY(log_eval(w));
        }
        if ((t->checkpoint_every > 0 && 0 == w->step % t->checkpoint_every) || last) {
            LOCO_TRY(save_checkpoint(w, err));
        }
    }
    if (first_step == w->step && 0 == w->rank) {
        LOCO_INFO("nothing to do: already at step %lld of %d", (long long)w->step, t->steps);
    }
    if (w->tty) {
        show_progress(w, 0, true);
    }
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Summary */

static loco_status write_run_json(worker *w, loco_status outcome, const loco_error *failure,
                                  loco_error *err)
{
    char path[LOCO_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/run.json", w->cfg.run.dir);
    loco_atomic_file af;
    LOCO_TRY(loco_atomic_open(&af, path, err));
    loco_json_writer jw;
    loco_json_writer_init(&jw, af.fp, true);
    char digest[17] = "";
    if (NULL != w->model) {
        loco_hash_hex(loco_hash64(loco_model_params(w->model),
                                  loco_model_num_params(w->model) * sizeof(float), 0),
                      digest);
    }
    loco_json_begin_object(&jw);
    loco_json_key(&jw, "loco_version");
    loco_json_string(&jw, LOCO_VERSION_STRING);
    loco_json_key(&jw, "config");
    loco_json_string(&jw, w->cfg.file);
    loco_json_key(&jw, "status");
    loco_json_string(&jw, LOCO_OK == outcome ? "ok" : loco_status_str(outcome));
    loco_json_key(&jw, "exit_code");
    loco_json_int(&jw, loco_status_exit_code(outcome));
    if (LOCO_OK != outcome) {
        loco_json_key(&jw, "error");
        loco_json_string(&jw, loco_error_msg(failure, outcome));
    }
    loco_json_key(&jw, "strategy");
    loco_json_string(&jw, "single");
    loco_json_key(&jw, "world_size");
    loco_json_int(&jw, w->world);
    loco_json_key(&jw, "steps");
    loco_json_int(&jw, w->step);
    loco_json_key(&jw, "tokens_per_worker");
    loco_json_number(&jw, w->tokens);
    loco_json_key(&jw, "nonfinite_steps");
    loco_json_int(&jw, w->nonfinite);
    loco_json_key(&jw, "final_loss");
    loco_json_number(&jw, w->last_loss);
    loco_json_key(&jw, "final_val_loss");
    loco_json_number(&jw, w->last_val_loss);
    loco_json_key(&jw, "wall_seconds");
    loco_json_number(&jw, loco_now_s() - w->start_s);
    loco_json_key(&jw, "params");
    loco_json_uint(&jw, NULL != w->model ? loco_model_num_params(w->model) : 0);
    loco_json_key(&jw, "workers");
    loco_json_begin_array(&jw);
    loco_json_begin_object(&jw);
    loco_json_key(&jw, "rank");
    loco_json_int(&jw, w->rank);
    loco_json_key(&jw, "bytes_sent");
    loco_json_uint(&jw, 0);
    loco_json_key(&jw, "bytes_received");
    loco_json_uint(&jw, 0);
    loco_json_key(&jw, "param_digest");
    loco_json_string(&jw, digest);
    loco_json_end_object(&jw);
    loco_json_end_array(&jw);
    loco_json_key(&jw, "membership");
    loco_json_begin_object(&jw);
    loco_json_key(&jw, "started");
    loco_json_int(&jw, w->world);
    loco_json_key(&jw, "died");
    loco_json_int(&jw, 0);
    loco_json_key(&jw, "evicted");
    loco_json_int(&jw, 0);
    loco_json_key(&jw, "joined");
    loco_json_int(&jw, 0);
    loco_json_key(&jw, "left");
    loco_json_int(&jw, 0);
    loco_json_end_object(&jw);
    loco_json_end_object(&jw);
    return loco_atomic_commit(&af, err);
}

int loco_cmd_train(int argc, char **argv)
{
    train_args args;
    int rc = parse_train_args(argc, argv, &args);
    if (rc >= 0) {
        return rc;
    }
    worker *w = calloc(1, sizeof *w);
    if (NULL == w) {
        fprintf(stderr, "loco train: out of memory\n");
        return 1;
    }
    w->world = 1;
    w->rank = 0;
    loco_error err = {0};
    loco_status st = loco_config_load(&w->cfg, args.config_path, args.overrides,
                                      args.n_overrides, &err);
    if (LOCO_OK == st) {
        st = worker_init(w, &err);
    }
    if (LOCO_OK == st && args.resume) {
        st = resume_checkpoint(w, &err);
    }
    bool initialised = LOCO_OK == st;
    if (LOCO_OK == st) {
        st = train_loop(w, &err);
    }
    if (initialised) {
        loco_error json_err = {0};
        loco_status js = write_run_json(w, st, &err, &json_err);
        if (LOCO_OK != js) {
            fprintf(stderr, "loco train: cannot write run.json: %s\n",
                    loco_error_msg(&json_err, js));
            if (LOCO_OK == st) {
                st = js;
            }
        }
    }
    if (LOCO_OK != st) {
        fprintf(stderr, "loco train: %s\n", loco_error_msg(&err, st));
    } else {
        char loss[32];
        snprintf(loss, sizeof loss, "%.4f", w->last_val_loss);
        fprintf(stderr, "loco train: done, %lld steps, validation loss %s, outputs in %s\n",
                (long long)w->step, loss, w->cfg.run.dir);
    }
    worker_free(w);
    free(w);
    return loco_status_exit_code(st);
}
