/* src/train.c — `loco train CFG`: the worker loop.
 *
 * One process trains one replica. Under `launch/loco-mpirun -np W` (or `--join HOST:PORT
 * --rank R --world W`) the W workers form a communicator first; a single process needs none;
 * `--join HOST:PORT` alone joins a running group at its next sync point (train_ft.c).
 * Then: read this worker's part of the data, build the model (rank 0's initial weights are
 * broadcast so every replica starts equal), the inner optimizer and the sync strategy
 * (optim/sync.h), and per step: next batch -> forward -> backward -> loco_sync_step (which
 * communicates as the strategy says, clips and updates), with periodic validation, checkpoints
 * and metrics. At the end the strategy finishes what is in flight, the final model is validated,
 * and rank 0 gathers every worker's totals and digests into run.json.
 *
 * Validation evaluates the strategy's shared parameters (theta_global for diloco/streaming, the
 * replica otherwise) on train.eval_batches batches spread evenly over val.tok, the batches dealt
 * round-robin to the workers and the losses summed by one allreduce: the same number for every
 * strategy and worker count.
 *
 * A non-finite local loss or gradient is counted and skipped (the worker still takes part in
 * every collective); more than train.max_nonfinite stop the run with an error.
 *
 * Every call that communicates is repeated through train_repeat_after_loss (train_ft.c): a
 * lost worker makes the survivors re-form the group, re-deal the data and repeat the call, so
 * training goes on with whoever is left. Sync points between steps (train_ft.c) admit joiners,
 * let workers leave (SIGTERM, train.leave_at_step) and repair replicas that diverged.
 *
 * Outputs in run.dir: config.yaml (resolved, rank 0), metrics.jsonl (every worker appends),
 * checkpoints/step_NNNNNNN/ (model, optimizer state and sync state per rank; checkpoints/latest
 * names the newest), member.ID.json (every worker's own outcome: finished, left, evicted or
 * failed), run.json (the summary, by the last rank 0). `--resume` continues from
 * checkpoints/latest bit-identically.
 */
#include "src/commands.h"
#include "src/train_impl.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRAIN_MAX_OVERRIDES 64

/* ---------------------------------------------------------------------------------------------
 * Command line */

typedef struct train_args {
    const char *config_path;
    const char *overrides[TRAIN_MAX_OVERRIDES];
    int n_overrides;
    bool resume;
    const char *join; /* --join HOST:PORT */
    int rank, world;  /* --rank, --world (-1: not given) */
} train_args;

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: loco train CONFIG.yaml [--set section.key=value]... [--resume]\n"
            "                  [--join HOST:PORT [--rank R --world W]]\n\n"
            "Train the model CONFIG describes, alone or as one of several workers:\n"
            "  launch/loco-mpirun -np 4 build/loco train configs/diloco.yaml\n"
            "  loco train CFG --join 10.0.0.1:29500 --rank R --world 4   (one per machine;\n"
            "                                 rank 0 listens on the port, the others dial it)\n"
            "  loco train CFG --join HOST:PORT   join a running group (any member's or the\n"
            "                                 coordinator's address) at its next sync point\n"
            "Workers that die, stall or leave (SIGTERM) are left behind and training goes on;\n"
            "every worker needs the run key (transport.key_file, LOCO_RUN_KEY_FILE or\n"
            "LOCO_RUN_KEY) to join.\n"
            "sync.strategy chooses how the workers agree (ddp, diloco, streaming, demo).\n\n"
            "Outputs go to run.dir: config.yaml (the resolved configuration), metrics.jsonl (one\n"
            "JSON object per logged step, sync and evaluation, from every worker), checkpoints/\n"
            "(weights, optimizer and sync state per worker) and run.json (the summary, with\n"
            "every worker's bytes sent and received and final parameter digest, and the\n"
            "membership: started, died, evicted, joined, left); member.ID.json per worker.\n\n"
            "options:\n"
            "  --set KEY=VALUE   override a config key (repeatable), e.g. --set train.steps=50\n"
            "  --resume          continue from run.dir/checkpoints/latest, bit-identically\n"
            "  --join HOST:PORT  meet the other workers there (sets transport.join); without\n"
            "                    --rank/--world (and LOCO_RANK/LOCO_WORLD): join a running run\n"
            "  --rank R          this worker's rank with --join (or env LOCO_RANK)\n"
            "  --world W         the number of workers with --join (or env LOCO_WORLD)\n"
            "  --help-config     list every config key with its default and allowed values\n"
            "  -h, --help        this help\n\n"
            "exit codes: 0 trained (or left the group when asked), 1 runtime failure (data,\n"
            "non-finite losses, evicted from the group, I/O), 2 usage or configuration error\n");
}

static int parse_int_arg(const char *what, const char *text, int *out)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if ('\0' == text[0] || '\0' != *end || v < 0 || v > 1 << 20) {
        fprintf(stderr, "loco train: %s '%s' is not a non-negative integer\n", what, text);
        return 2;
    }
    *out = (int)v;
    return -1;
}

static int parse_train_args(int argc, char **argv, train_args *args)
{
    memset(args, 0, sizeof *args);
    args->rank = args->world = -1;
    static const struct option options[] = {{"set", required_argument, NULL, 's'},
                                            {"resume", no_argument, NULL, 'r'},
                                            {"join", required_argument, NULL, 'j'},
                                            {"rank", required_argument, NULL, 'R'},
                                            {"world", required_argument, NULL, 'W'},
                                            {"help-config", no_argument, NULL, 'c'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int opt, rc;
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
        case 'j': args->join = optarg; break;
        case 'R':
            if (-1 != (rc = parse_int_arg("--rank", optarg, &args->rank))) {
                return rc;
            }
            break;
        case 'W':
            if (-1 != (rc = parse_int_arg("--world", optarg, &args->world))) {
                return rc;
            }
            break;
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
    if ((args->rank >= 0 || args->world >= 0) && NULL == args->join) {
        fprintf(stderr, "loco train: --rank and --world go with --join HOST:PORT\n");
        return 2;
    }
    args->config_path = argv[optind];
    return -1; /* continue */
}

/* ---------------------------------------------------------------------------------------------
 * Communicator */

static loco_launch_mode resolve_launch(const loco_config *cfg)
{
    if (LOCO_LAUNCH_AUTO != cfg->transport.launch) {
        return cfg->transport.launch;
    }
    if (NULL != getenv("OMPI_COMM_WORLD_SIZE")) {
        return LOCO_LAUNCH_MPI;
    }
    if ('\0' != cfg->transport.comm.join[0]) {
        return LOCO_LAUNCH_JOIN;
    }
    return LOCO_LAUNCH_SINGLE;
}

static loco_status comm_start(worker *w, loco_error *err)
{
    w->rank = 0;
    w->world = 1;
    if (LOCO_LAUNCH_SINGLE == w->launch) {
        return LOCO_OK;
    }
    loco_comm_config cc = w->cfg.transport.comm;
    cc.bootstrap = LOCO_LAUNCH_MPI == w->launch ? LOCO_BOOTSTRAP_MPI : LOCO_BOOTSTRAP_JOIN;
    bool numbered = cc.rank >= 0 || cc.world >= 0 || NULL != getenv("LOCO_RANK") ||
                    NULL != getenv("LOCO_WORLD");
    if (LOCO_BOOTSTRAP_JOIN == cc.bootstrap && !numbered) {
        cc.bootstrap = LOCO_BOOTSTRAP_ADMIT; /* no rank: join a running group */
    }
    LOCO_TRY(loco_comm_init(&w->comm, &cc, err));
    w->rank = loco_comm_rank(w->comm);
    w->world = loco_comm_size(w->comm);
    return LOCO_OK;
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
    return LOCO_OK;
}

loco_status train_deal_data(worker *w, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    loco_loader_free(&w->loader);
    memset(&w->loader, 0, sizeof w->loader);
    LOCO_TRY(loco_loader_init(&w->loader, &w->train_file, w->cfg.data.partition,
                              w->cfg.data.block, w->rank, w->world, t->batch, t->seq_len, err));
    loco_loader_seek(&w->loader, w->data_sequences);
    return LOCO_OK;
}

static loco_status worker_init(worker *w, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    LOCO_TRY(train_device_check(&w->cfg, err));
    if (t->threads > 0) {
        omp_set_num_threads(t->threads);
    }
    LOCO_TRY(open_data(w, err)); /* a missing or bad corpus leaves no run directory behind */
    LOCO_TRY(loco_mkdir_p(w->cfg.run.dir, err));
    if (0 == w->rank) {
        LOCO_TRY(loco_config_save(&w->cfg, w->cfg.run.dir, err));
    }
    size_t tokens = (size_t)t->batch * (size_t)t->seq_len;
    w->inputs = malloc(tokens * sizeof *w->inputs);
    w->targets = malloc(tokens * sizeof *w->targets);
    if (NULL == w->inputs || NULL == w->targets) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for batches");
    }
    LOCO_TRY(loco_model_init_device(&w->model, &w->cfg.model, t->batch, t->seq_len, t->device,
                                    train_device_index(&w->cfg, w->rank), err));
    loco_model_init_weights(w->model, w->cfg.run.seed);
    size_t n = loco_model_num_params(w->model);
    float *params = loco_model_params(w->model);
    bool joiner = NULL != w->comm && !loco_comm_admitted(w->comm);
    if (NULL != w->comm && !joiner) {
        /* every replica starts from rank 0's weights */
        loco_status st;
        do {
            loco_op_info info;
            st = loco_broadcast(w->comm, params, n, LOCO_DTYPE_F32, 0, &info);
            if (LOCO_OK != st) {
                loco_error_set(err, st, "broadcast of the initial weights failed: %s",
                               info.error);
            }
        } while (train_repeat_after_loss(w, &st, err));
        LOCO_TRY(st);
        LOCO_TRY(loco_model_upload_params(w->model, err)); /* a GPU model; no-op on the CPU */
    }
    LOCO_TRY(loco_optim_init(&w->optim, &w->cfg.optim, n, err));
    LOCO_TRY(loco_sync_init(&w->sync, &w->cfg.sync, w->comm, loco_model_tensors(w->model),
                            params, err));
    LOCO_TRY(train_device_init(w, err));
    w->eval_swap = loco_alloc_aligned(n * sizeof(float));
    if (NULL == w->eval_swap) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
    }
    LOCO_TRY(loco_metrics_open(&w->metrics, w->cfg.run.dir, w->rank, err));
    if (joiner) { /* admitted at the group's next sync point, with its state */
        LOCO_TRY(train_sync_point(w, err));
    } else {
        LOCO_TRY(train_deal_data(w, err));
    }
    w->last_loss = NAN;
    w->last_val_loss = NAN;
    w->tty = 0 == w->rank && isatty(STDERR_FILENO);
    w->start_s = loco_now_s();
    return LOCO_OK;
}

static void worker_free(worker *w)
{
    loco_sync_free(w->sync);
    train_device_free(w->dev);
    loco_metrics_close(&w->metrics);
    loco_optim_free(&w->optim);
    loco_model_free(w->model);
    free(w->eval_swap);
    free(w->inputs);
    free(w->targets);
    loco_loader_free(&w->loader);
    loco_token_file_close(&w->train_file);
    loco_token_file_close(&w->val_file);
    loco_comm_free(w->comm);
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation */

/* Mean loss of the strategy's shared parameters over train.eval_batches batches spread evenly
 * over val.tok (every source sampled); batch b is scored by worker b mod world and the sums meet
 * in one allreduce. */
static loco_status evaluate_once(worker *w, double *val_loss, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    float *params = loco_model_params(w->model);
    size_t bytes = loco_model_num_params(w->model) * sizeof(float);
    const float *shared = loco_sync_eval_params(w->sync, params);
    bool swap = shared != params;
    if (swap) {
        LOCO_TRY(train_device_params_to_host(w, err)); /* a GPU replica, to restore below */
        memcpy(w->eval_swap, params, bytes);
        memcpy(params, shared, bytes);
        LOCO_TRY(loco_model_upload_params(w->model, err)); /* no-op on the CPU */
    }
    loco_loader val;
    loco_status st = loco_loader_init(&val, &w->val_file, LOCO_PARTITION_IID, 1 << 30, 0, 1,
                                      t->batch, t->seq_len, err);
    float sum = 0;
    for (int b = 0; LOCO_OK == st && b < t->eval_batches; b++) {
        if (b % w->world != w->rank) {
            continue;
        }
        loco_loader_seek_spread(&val, b, t->eval_batches);
        loco_loader_next(&val, w->inputs, w->targets);
        float loss = NAN;
        st = loco_model_forward(w->model, w->inputs, w->targets, t->batch, t->seq_len, &loss, err);
        sum += loss;
    }
    if (LOCO_OK == st) {
        loco_loader_free(&val);
    }
    if (swap) {
        memcpy(params, w->eval_swap, bytes);
        loco_status up = loco_model_upload_params(w->model, err);
        st = LOCO_OK == st ? up : st;
    }
    LOCO_TRY(st);
    LOCO_TRY(loco_sync_sum(w->sync, &sum, 1, err));
    *val_loss = sum / t->eval_batches;
    return LOCO_OK;
}

/* Evaluate; after a lost worker, again over the new world's split of the batches. */
static loco_status evaluate(worker *w, double *val_loss, loco_error *err)
{
    double t0 = loco_now_s();
    loco_status st;
    do {
        st = evaluate_once(w, val_loss, err);
    } while (train_repeat_after_loss(w, &st, err));
    w->eval_s += loco_now_s() - t0;
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * The loop */

static const char *sync_kind(const worker *w, const loco_sync_step_out *out)
{
    switch (w->cfg.sync.strategy) {
    case LOCO_SYNC_DILOCO: return 0 != w->cfg.sync.delay ? "outer_delayed" : "outer";
    case LOCO_SYNC_STREAMING: return out->fragment >= 0 ? "fragment" : "final";
    default: return "final";
    }
}

/* Strategies that sync rarely get one metrics record per sync (with the shared digest). */
static bool logs_syncs(const worker *w)
{
    return LOCO_SYNC_DILOCO == w->cfg.sync.strategy ||
           LOCO_SYNC_STREAMING == w->cfg.sync.strategy;
}

/* One training step on the next batch. */
static loco_status train_step(worker *w, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    double t0 = loco_now_s();
    train_fault_arm(w);
    loco_loader_next(&w->loader, w->inputs, w->targets);
    w->data_sequences += (uint64_t)t->batch;
    float loss = NAN;
    loco_sync_step_out out;
    w->step_retries = 0;
    if (NULL != w->dev) { /* train.device cuda: the whole inner step on the GPU */
        LOCO_TRY(train_device_step(w, &loss, &out, err));
    } else {
        LOCO_TRY(loco_model_forward(w->model, w->inputs, w->targets, t->batch, t->seq_len, &loss,
                                    err));
        loco_model_zero_grad(w->model);
        if (isfinite(loss)) {
            LOCO_TRY(loco_model_backward(w->model, err));
        }
        loco_sync_step_in in = {.params = loco_model_params(w->model),
                                .grads = loco_model_grads(w->model),
                                .grads_finite = isfinite(loss),
                                .optim = &w->optim,
                                .lr = loco_optim_lr(&w->cfg.optim, w->step),
                                .step = w->step};
        LOCO_TRY(train_sync_step(w, &in, &out, err));
    }
    w->repeats_in_row = 0;
    w->tokens += (double)t->batch * t->seq_len;
    bool finite = isfinite(loss);
    w->comm_wait_s += out.comm_wait_s;
    w->last_loss = loss;
    w->last_grad_norm = out.grad_norm;
    w->last_step_s = loco_now_s() - t0;
    if (w->step_retries > 0) {
        LOCO_TRY(train_log_resumed(w));
    }
    w->step++;
    train_ft_step_done(w, &out);
    if (out.synced && logs_syncs(w)) {
        w->syncs++;
        LOCO_TRY(train_log_sync(w, &out, sync_kind(w, &out)));
    }
    if (!finite || out.skipped) {
        w->nonfinite++;
        LOCO_WARN("step %lld: non-finite %s (%g); update skipped (%lld of at most %d)",
                  (long long)w->step - 1, finite ? "gradient" : "loss",
                  finite ? out.grad_norm : (double)loss, (long long)w->nonfinite,
                  t->max_nonfinite);
        LOCO_TRY(train_log_nonfinite(w, loss, out.grad_norm));
        if (w->nonfinite > t->max_nonfinite) {
            return loco_error_set(err, LOCO_ERR_NONFINITE,
                                  "%lld steps had a non-finite loss or gradient (limit "
                                  "train.max_nonfinite = %d); lower optim.lr or raise "
                                  "optim.warmup_steps",
                                  (long long)w->nonfinite, t->max_nonfinite);
        }
    }
    return LOCO_OK;
}

/* Complete the strategy (what is in flight), then validate and checkpoint the final model. */
static loco_status train_finish(worker *w, loco_error *err)
{
    loco_sync_step_out out;
    LOCO_TRY(train_device_to_host(w, err)); /* a GPU worker's replica, for the strategy */
    loco_status st;
    do {
        st = loco_sync_finish(w->sync, loco_model_params(w->model), &out, err);
    } while (train_repeat_after_loss(w, &st, err));
    LOCO_TRY(st);
    LOCO_TRY(train_device_from_host(w, err));
    w->comm_wait_s += out.comm_wait_s;
    if (out.synced && logs_syncs(w)) {
        w->syncs++;
        LOCO_TRY(train_log_sync(w, &out, "final"));
    }
    LOCO_TRY(evaluate(w, &w->last_val_loss, err));
    LOCO_TRY(train_log_eval(w));
    return train_save_checkpoint(w, err);
}

static loco_status train_loop(worker *w, loco_error *err)
{
    const loco_train_params *t = &w->cfg.train;
    w->start_s = loco_now_s();
    double window_start = w->start_s;
    double window_tokens = 0;
    int64_t first_step = w->step;
    while (w->step < t->steps) {
        if (train_sync_point_due(w)) {
            LOCO_TRY(train_sync_point(w, err));
        }
        LOCO_TRY(train_step(w, err));
        window_tokens += (double)t->batch * t->seq_len;
        bool last = w->step == t->steps;
        if (0 == w->step % t->log_every || last) {
            double now = loco_now_s();
            double tokens_per_s = window_tokens / fmax(now - window_start, 1e-9);
            window_start = now;
            window_tokens = 0;
            float lr = loco_optim_lr(&w->cfg.optim, w->step - 1);
            LOCO_TRY(train_log_step(w, lr, w->last_grad_norm, tokens_per_s));
            train_show_progress(w, tokens_per_s, false);
        }
        if (last) {
            break; /* the final validation follows the strategy's finish */
        }
        if (t->eval_every > 0 && 0 == w->step % t->eval_every) {
            LOCO_TRY(evaluate(w, &w->last_val_loss, err));
            LOCO_TRY(train_log_eval(w));
        }
        if (t->checkpoint_every > 0 && 0 == w->step % t->checkpoint_every) {
            LOCO_TRY(train_save_checkpoint(w, err));
        }
    }
    if (first_step == w->step && 0 == w->rank) {
        LOCO_INFO("nothing to do: already at step %lld of %d", (long long)w->step, t->steps);
    }
    if (w->ft && w->last_sync_step != w->step) { /* the last one, on every member */
        LOCO_TRY(train_sync_point(w, err));
    }
    LOCO_TRY(train_finish(w, err));
    if (w->tty) {
        train_show_progress(w, 0, true);
    }
    return LOCO_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Summary */

/* Gather every worker's summary (rank 0 writes them) into *all, allocated for the final world;
 * returns how many. On failure only this worker's (1), with err saying why. */
static int gather_summaries(worker *w, worker_summary **all, loco_error *err)
{
    for (;;) {
        free(*all);
        *all = calloc((size_t)(w->world > 1 ? w->world : 1), sizeof **all);
        if (NULL == *all) {
            loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for the workers' totals");
            return 0;
        }
        train_summary(w, &(*all)[0]);
        if (NULL == w->comm) {
            return 1;
        }
        worker_summary mine = (*all)[0];
        loco_op_info info;
        loco_status st =
            loco_allgather(w->comm, &mine, sizeof mine, *all, LOCO_DTYPE_BYTE, &info);
        if (LOCO_OK == st) {
            return w->world;
        }
        loco_error_set(err, st, "gathering the workers' totals failed: %s", info.error);
        if (!train_repeat_after_loss(w, &st, err)) {
            (*all)[0] = mine;
            return 1;
        }
    }
}

/* Set the log prefix to this worker's rank before any thread exists (MPI and --join runs). */
static void set_log_prefix(const train_args *args)
{
    const char *mpi_rank = getenv("OMPI_COMM_WORLD_RANK");
    char prefix[32] = "";
    if (NULL != mpi_rank) {
        snprintf(prefix, sizeof prefix, "r%.8s", mpi_rank);
    } else if (args->rank >= 0) {
        snprintf(prefix, sizeof prefix, "r%d", args->rank);
    } else if (NULL != args->join) {
        snprintf(prefix, sizeof prefix, "joiner");
    }
    if ('\0' != prefix[0]) {
        loco_log_set_prefix(prefix);
    }
}

static loco_status load_config(worker *w, const train_args *args, loco_error *err)
{
    LOCO_TRY(loco_config_load(&w->cfg, args->config_path, args->overrides, args->n_overrides,
                              err));
    loco_transport_params *tp = &w->cfg.transport;
    if (NULL != args->join) {
        if (strlen(args->join) >= sizeof tp->comm.join) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "--join: address too long");
        }
        snprintf(tp->comm.join, sizeof tp->comm.join, "%s", args->join);
        if (LOCO_LAUNCH_AUTO == tp->launch) {
            tp->launch = LOCO_LAUNCH_JOIN;
        }
    }
    tp->comm.rank = args->rank;
    tp->comm.world = args->world;
    loco_config_bind_transport(&w->cfg);
    w->launch = resolve_launch(&w->cfg);
    return LOCO_OK;
}

/* The closing line on stderr: what happened to this worker (and, on the last rank 0, to the
 * run). */
static void print_closing_line(const worker *w, loco_status st, const loco_error *err)
{
    if (0 == strcmp(w->outcome, "left")) {
        fprintf(stderr, "loco train: %s; its result is in %s/member.%u.json\n", err->msg,
                w->cfg.run.dir, w->member_id);
        return;
    }
    if (LOCO_OK != st) {
        fprintf(stderr, "loco train: %s\n", loco_error_msg(err, st));
        return;
    }
    if (0 != w->rank) {
        return;
    }
    char loss[32], members[160] = "";
    snprintf(loss, sizeof loss, "%.4f", w->last_val_loss);
    if (w->ft) {
        loco_ft_totals t;
        loco_comm_get_ft_totals(w->comm, &t);
        snprintf(members, sizeof members,
                 "; workers started %u, died %u, evicted %u, joined %u, left %u (epoch %u)",
                 t.counts.started, t.counts.died, t.counts.evicted, t.counts.joined,
                 t.counts.left, loco_comm_epoch(w->comm));
    }
    fprintf(stderr, "loco train: done, %lld steps x %d worker%s (%s), validation loss %s%s, "
                    "outputs in %s\n",
            (long long)w->step, w->world, 1 == w->world ? "" : "s",
            loco_sync_strategy_name(w->cfg.sync.strategy), loss, members, w->cfg.run.dir);
}

int loco_cmd_train(int argc, char **argv)
{
    train_args args;
    int rc = parse_train_args(argc, argv, &args);
    if (rc >= 0) {
        return rc;
    }
    set_log_prefix(&args);
    worker *w = calloc(1, sizeof *w);
    if (NULL == w) {
        fprintf(stderr, "loco train: out of memory\n");
        return 1;
    }
    w->world = 1;
    w->outcome = "failed";
    w->last_sync_step = w->next_sync_step = -1;
    loco_error err = {0};
    loco_status st = load_config(w, &args, &err);
    if (LOCO_OK == st && LOCO_LAUNCH_SINGLE != w->launch) {
        train_block_sigterm(); /* before any thread: SIGTERM becomes a leave (train_ft.c) */
    }
    if (LOCO_OK == st) {
        st = comm_start(w, &err);
    }
    if (LOCO_OK == st) {
        st = train_ft_begin(w, &err);
    }
    if (LOCO_OK == st) {
        /* settings that depend on the worker count: refused before any training */
        st = loco_sync_check_setup(&w->cfg.sync, w->world, NULL, &err);
    }
    if (LOCO_OK == st && args.resume && NULL != w->comm && !loco_comm_admitted(w->comm)) {
        st = loco_error_set(&err, LOCO_ERR_USAGE,
                            "--resume and joining a running group exclude each other: a joiner "
                            "receives the group's state");
    }
    if (LOCO_OK == st) {
        st = worker_init(w, &err);
    }
    if (LOCO_OK == st && args.resume) {
        st = train_resume_checkpoint(w, &err);
        w->data_sequences = (uint64_t)w->step * (uint64_t)w->cfg.train.batch;
    }
    bool initialised = LOCO_OK == st;
    if (LOCO_OK == st) {
        st = train_loop(w, &err);
    }
    if (LOCO_OK == st) {
        w->outcome = "finished";
    }
    /* a worker that left, was removed, or lost the group (it may have been stopped while the
     * others went on) does not write the run's summary; its member.ID.json says what happened */
    bool summarise = 0 == strcmp(w->outcome, "finished") ||
                     (0 == strcmp(w->outcome, "failed") && !w->cut_off);
    if (initialised && summarise) {
        worker_summary *all = NULL;
        loco_error gather_err = {0};
        int n = 1;
        if (LOCO_OK == st) {
            n = gather_summaries(w, &all, &gather_err);
        } else if (NULL != (all = calloc(1, sizeof *all))) {
            train_summary(w, &all[0]); /* a failed run reports this worker alone */
        }
        if (LOCO_OK == st && n < w->world) {
            st = LOCO_OK != gather_err.status ? gather_err.status : LOCO_ERR_NOMEM;
            err = gather_err;
            w->outcome = "failed";
        }
        if (0 == w->rank && NULL != all) {
            loco_error json_err = {0};
            loco_status js = train_write_run_json(w, st, &err, all, n, &json_err);
            if (LOCO_OK != js) {
                fprintf(stderr, "loco train: cannot write run.json: %s\n",
                        loco_error_msg(&json_err, js));
                if (LOCO_OK == st) {
                    st = js;
                }
            }
        }
        free(all);
    }
    if (NULL != w->comm && '\0' != w->cfg.run.dir[0]) {
        loco_error member_err = {0};
        loco_status ms = train_write_member_json(w, st, &err, &member_err);
        if (LOCO_OK != ms) {
            fprintf(stderr, "loco train: cannot write member.%u.json: %s\n", w->member_id,
                    loco_error_msg(&member_err, ms));
        }
    }
    print_closing_line(w, st, &err);
    bool left = 0 == strcmp(w->outcome, "left");
    train_ft_end(w);
    worker_free(w);
    free(w);
    return left ? 0 : loco_status_exit_code(st);
}
