/* src/train_impl.h — private to `loco train`: the worker's state and the functions its files
 * share. Reading order: train.c (command line, communicator, the loop), train_checkpoint.c
 * (checkpoints and --resume), train_output.c (progress line, metrics.jsonl, run.json).
 */
#ifndef LOCO_SRC_TRAIN_IMPL_H
#define LOCO_SRC_TRAIN_IMPL_H

#include "collectives/comm.h"
#include "optim/optim.h"
#include "optim/sync.h"
#include "src/config.h"
#include "src/data.h"
#include "src/metrics.h"
#include "src/model.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct train_device train_device; /* train_device.c: a worker's GPU state */

/* Everything one worker holds while training. */
typedef struct worker {
    loco_config cfg;
    int rank, world;
    loco_launch_mode launch;   /* how the workers met (resolved from transport.launch) */
    loco_comm_t comm;          /* NULL for a single process */
    loco_token_file train_file, val_file;
    loco_loader loader;        /* this worker's part of train.tok */
    uint16_t *inputs;          /* (B, T) */
    uint16_t *targets;         /* (B, T) */
    loco_model *model;
    loco_optim optim;          /* the inner optimizer */
    loco_sync *sync;           /* the sync strategy */
    train_device *dev;         /* train.device cuda: the GPU's inner optimizer; NULL on the CPU */
    float *eval_swap;          /* (num_params) the replica, while theta_global is evaluated */
    loco_metrics metrics;
    int64_t step;              /* steps done (the next step's index) */
    int64_t nonfinite;         /* steps whose local loss or gradient was not finite */
    int64_t syncs;             /* sync events (outer steps, fragment updates) */
    double tokens;             /* tokens this worker trained on */
    double last_loss;
    double last_grad_norm;     /* of the gradient the last update used, before clipping */
    double last_val_loss;
    double comm_wait_s;        /* seconds blocked in the strategy's collectives */
    double eval_s;             /* seconds spent validating */
    double start_s;
    bool tty;                  /* progress line on a terminal */
} worker;

/* What every worker reports to rank 0 at the end (gathered as bytes: same binary everywhere). */
typedef struct worker_summary {
    int64_t rank, steps, nonfinite, syncs;
    uint64_t bytes_sent, bytes_received;     /* every byte on the wire */
    uint64_t payload_sent, payload_received; /* collective payloads only */
    uint64_t retransmits;
    uint64_t param_digest;                   /* XXH64 of the evaluated parameters */
    uint64_t state_digest;                   /* loco_sync_shared_digest */
    double tokens, final_loss, comm_wait_s;
} worker_summary;

/* The one place a collective's failure is handled (train.c). */
loco_status train_comm_result(worker *w, loco_status st, loco_error *err);

/* train_checkpoint.c */
loco_status train_save_checkpoint(worker *w, loco_error *err);
loco_status train_resume_checkpoint(worker *w, loco_error *err);

/* train_device.c: train.device cuda (every function is a no-op returning LOCO_OK when w->dev
 * is NULL, i.e. on the CPU). */
/* Refuse train.device cuda with a strategy other than none/diloco, without CUDA or a GPU. */
loco_status train_device_check(const loco_config *cfg, loco_error *err);
/* The GPU of this worker: train.cuda_device, or the local rank modulo the GPUs visible. */
int train_device_index(const loco_config *cfg, int rank);
/* After the model (on the GPU), the host optimizer and the strategy exist: the device optimizer. */
loco_status train_device_init(worker *w, loco_error *err);
void train_device_free(train_device *dev); /* NULL is fine */
/* One step on the batch in w->inputs/targets: forward, backward, clip and inner update on the
 * GPU, then loco_sync_step (inner_done), the parameters crossing to the host and back only when
 * the strategy uses them. *loss: the local loss. */
loco_status train_device_step(worker *w, float *loss, loco_sync_step_out *out, loco_error *err);
/* Device parameters -> the model's host mirror. */
loco_status train_device_params_to_host(worker *w, loco_error *err);
/* Parameters and the inner optimizer's state and step count: device -> host (w->optim), and
 * back. Around checkpoints, --resume and the strategy's finish. */
loco_status train_device_to_host(worker *w, loco_error *err);
loco_status train_device_from_host(worker *w, loco_error *err);

/* train_output.c */
void train_show_progress(worker *w, double tokens_per_s, bool final);
loco_status train_log_step(worker *w, float lr, double grad_norm, double tokens_per_s);
loco_status train_log_eval(worker *w);
loco_status train_log_nonfinite(worker *w, double loss, double grad_norm);
loco_status train_log_sync(worker *w, const loco_sync_step_out *out, const char *kind);
void train_summary(worker *w, worker_summary *out);
loco_status train_write_run_json(worker *w, loco_status outcome, const loco_error *failure,
                                 const worker_summary *summaries, int n_summaries,
                                 loco_error *err);

#endif /* LOCO_SRC_TRAIN_IMPL_H */
