/* src/train_impl.h — private to `loco train`: the worker's state and the functions its files
 * share. Reading order: train.c (command line, communicator, the loop), train_ft.c (the control
 * plane: recovering from lost workers, sync points, joining, leaving), train_checkpoint.c
 * (checkpoints and --resume), train_output.c (progress line, metrics.jsonl, run.json).
 */
#ifndef LOCO_SRC_TRAIN_IMPL_H
#define LOCO_SRC_TRAIN_IMPL_H

#include "collectives/comm.h"
#include "collectives/membership.h"
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
    double last_step_s;        /* seconds the last step took */
    /* The control plane (train_ft.c); ft false: no recoveries and no sync points */
    bool ft;
    uint32_t member_id;        /* stable id (loco_comm_member_id; a joiner's is new) */
    const char *outcome;       /* "finished", "left", "evicted" or "failed" */
    uint64_t data_sequences;   /* sequences each worker has read: the group's data position */
    int64_t last_sync_step;    /* the step of the last sync point (-1: none yet) */
    int64_t next_sync_step;    /* diloco with delay: the next sync point's step (-1: none) */
    bool sync_due;             /* diloco: a round just ended, a sync point comes next */
    int64_t retries;           /* calls repeated after a recovery, in the whole run */
    int64_t step_retries;      /* ... in the current step */
    int64_t repeats_in_row;    /* recoveries since the last completed step (a runaway guard) */
    double fail_wall_s;        /* wall clock when the current step first lost a worker */
    bool cut_off;              /* a recovery failed: the group may go on without this worker,
                                * so it does not speak for the run (no run.json) */
    bool fault_target;         /* train.fault_members names this worker */
    struct train_watcher *watcher; /* SIGTERM and fault-injection thread (NULL: none) */
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
    /* the control plane's totals (loco_comm_get_ft_totals) */
    int64_t member_id, epoch, retries;
    uint64_t recoveries, ops_committed, ops_aborted, repairs, epochs, sync_points;
    uint64_t failovers;
    double recover_seconds;
} worker_summary;

/* train.c: give this worker its part of train.tok for its current rank and world, at the
 * group's data position (w->data_sequences). */
loco_status train_deal_data(worker *w, loco_error *err);

/* train_ft.c — the control plane in the loop.
 *
 * Every call that communicates is wrapped so:
 *     do { st = CALL; } while (train_repeat_after_loss(w, &st, err));
 * After a lost worker (LOCO_ERR_PEER_LOST) the survivors re-form the group and the call is
 * repeated (optim/sync.h, Failures); any other status ends the loop. Without a control plane a
 * lost worker ends the run with a message saying so. */
bool train_repeat_after_loss(worker *w, loco_status *st, loco_error *err);

/* The strategy's step (loco_sync_step) so wrapped: repeated after a lost worker. */
loco_status train_sync_step(worker *w, const loco_sync_step_in *in, loco_sync_step_out *out,
                            loco_error *err);

/* Start/stop the thread that turns SIGTERM into a leave at the next sync point and, for tests,
 * kills this worker mid-collective (train.kill_at_step). SIGTERM must already be blocked in
 * every thread (train_block_sigterm, before any thread exists). */
loco_status train_ft_begin(worker *w, loco_error *err);
void train_ft_end(worker *w);
void train_block_sigterm(void);

/* A sync point (joins, leaves, state parity) is due at this step boundary. */
bool train_sync_point_due(const worker *w);
/* Hold one: quiesce the strategy, hand the shared state to the control plane, follow the new
 * membership. LOCO_ERR_STOPPED when this worker left (outcome "left"), LOCO_ERR_ABORTED when
 * it was removed (outcome "evicted"). A joiner's first one admits it and fills its state. */
loco_status train_sync_point(worker *w, loco_error *err);
/* After a step: schedule diloco's sync points (the round boundaries) and arm the fault. */
void train_ft_step_done(worker *w, const loco_sync_step_out *out);
void train_fault_arm(worker *w);

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
/* The host replica (lane 0's parameters) was written: up to every GPU of the worker (the model's
 * own upload, a no-op, on the CPU). */
loco_status train_device_replica_written(worker *w, loco_error *err);
/* Sync points: the worker's shared state to the host before its list is read (ddp on GPUs:
 * replica and moments), and back after the list was written (ddp: replica and moments up to every
 * GPU; other strategies: the replica). No-ops where nothing lives on a GPU. */
loco_status train_device_state_to_host(worker *w, loco_error *err);
loco_status train_device_state_written(worker *w, loco_error *err);

/* train_output.c */
void train_show_progress(worker *w, double tokens_per_s, bool final);
loco_status train_log_step(worker *w, float lr, double grad_norm, double tokens_per_s);
loco_status train_log_eval(worker *w);
loco_status train_log_nonfinite(worker *w, double loss, double grad_norm);
loco_status train_log_sync(worker *w, const loco_sync_step_out *out, const char *kind);
void train_summary(worker *w, worker_summary *out);
loco_status train_log_recover(worker *w, const loco_reconf_report *rep, double fail_wall_s,
                              const char *cause);
loco_status train_log_membership(worker *w, const loco_reconf_report *rep);
loco_status train_log_resumed(worker *w);
/* This worker's own result, run.dir/member.ID.json (every worker, whatever happened). */
loco_status train_write_member_json(worker *w, loco_status outcome, const loco_error *failure,
                                    loco_error *err);
loco_status train_write_run_json(worker *w, loco_status outcome, const loco_error *failure,
                                 const worker_summary *summaries, int n_summaries,
                                 loco_error *err);

#endif /* LOCO_SRC_TRAIN_IMPL_H */
