/* src/config.h — one YAML file per run, parsed into typed parameter structs (DESIGN.md §9).
 *
 * The file is a mapping of sections (run, model, data, train, optim, ...); every key has a type,
 * a default, and an allowed range or set of values in a schema table (config.c). Unknown keys,
 * wrong types, out-of-range and inconsistent values are errors of the form
 *     FILE:LINE:COLUMN: KEY: what is wrong; allowed: ...
 * `--set section.key=value` overrides any key after the file is read. The loader is safe on
 * hostile files: aliases and anchors are refused, nesting, scalar length and node count are
 * bounded, and the file is capped at 1 MiB.
 *
 * The libraries never see this struct: it embeds their own parameter structs (loco_model_config,
 * loco_optim_params, ...), which train.c hands down.
 */
#ifndef LOCO_SRC_CONFIG_H
#define LOCO_SRC_CONFIG_H

#include "base/base.h"
#include "collectives/comm.h"
#include "optim/optim.h"
#include "optim/sync.h"
#include "src/data.h"
#include "src/model.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define LOCO_CONFIG_MAX_KEYS 256
#define LOCO_PATH_MAX 1024

typedef struct loco_run_params {
    char dir[LOCO_PATH_MAX]; /* run directory: metrics, checkpoints, run.json */
    uint64_t seed;           /* seeds init, data order and every stochastic codec */
} loco_run_params;

/* Most GPUs one worker drives (train.gpus_per_worker). */
#define LOCO_MAX_WORKER_GPUS 16

typedef struct loco_train_params {
    int steps;            /* optimizer steps per worker */
    int batch;            /* sequences per step per worker (B) */
    int seq_len;          /* tokens per sequence (T), <= model.ctx */
    int eval_every;       /* validation every N steps (0 = only at the end) */
    int eval_batches;     /* validation batches per evaluation */
    int checkpoint_every; /* checkpoint every N steps (0 = only at the end) */
    int log_every;        /* progress line and metrics every N steps */
    int max_nonfinite;    /* stop after this many skipped non-finite steps */
    int threads;          /* OpenMP threads (0 = all cores) */
    loco_device device;   /* where a worker computes: cpu, or cuda (one GPU per worker) */
    int cuda_device;      /* cuda: the GPU index (-1 = the worker's local rank) */
    int gpus_per_worker;  /* cuda: GPUs of one worker (NCCL among them), batch split over them */
    float gpu_timeout;    /* cuda: seconds a step's GPU work may take before the worker ends
                             itself (a hung kernel or NCCL collective; 0 = never) */
    int hang_at_step;     /* tests: a GPU of this worker stops answering at this step (-1: never) */
    /* On the control plane (ft.coordinator not none; src/train_ft.c): */
    int sync_every;       /* ddp/demo: a sync point every N steps (diloco, streaming: each round) */
    int leave_at_step;    /* leave the group at the first sync point from this step (-1: never) */
    int kill_at_step;     /* tests: SIGKILL this worker mid-collective from this step (-1: never) */
    size_t kill_after_bytes; /* ... once it has sent this many bytes since that step began */
    char fault_members[128]; /* member ids leave/kill/hang_at_step apply to ("" = all) */
} loco_train_params;

/* How a worker finds its peers (transport.launch). */
typedef enum loco_launch_mode {
    LOCO_LAUNCH_AUTO = 0,   /* MPI when started by mpirun, JOIN when transport.join is set,
                               else a single process */
    LOCO_LAUNCH_MPI = 1,    /* bootstrap through MPI (launch/loco-mpirun) */
    LOCO_LAUNCH_JOIN = 2,   /* dial transport.join (rank/world from --rank/--world or env) */
    LOCO_LAUNCH_SINGLE = 3, /* one process, no communication */
} loco_launch_mode;

#define LOCO_MAX_LINK_RULES 16

/* transport: section — the communicator's settings plus per-pair link overrides. */
typedef struct loco_transport_params {
    loco_launch_mode launch;
    loco_comm_config comm;   /* comm.link_rules points into link_rules below once resolved */
    char listen[128];        /* "HOST[:PORT]" (split into comm.listen_host / listen_port) */
    int n_link_rules;
    char link_rule_text[LOCO_MAX_LINK_RULES][256]; /* "FROM->TO key=value,..." as written */
    loco_link_rule link_rules[LOCO_MAX_LINK_RULES];
} loco_transport_params;

/* Where each key's value came from, for error messages. */
typedef struct loco_config_origin {
    int line, column; /* 1-based; 0 when the key kept its default */
    bool from_override;
} loco_config_origin;

typedef struct loco_config {
    char file[LOCO_PATH_MAX]; /* the YAML file loaded ("" for pure defaults) */
    loco_run_params run;
    loco_model_config model;
    loco_data_params data;
    loco_train_params train;
    loco_optim_params optim;
    loco_transport_params transport;
    loco_sync_params sync;   /* sync: and codec: sections (codec.* resolved against the codec's
                                own defaults; total_steps = train.steps, seed = run.seed) */
    int codec_name;          /* codec.name: 0 = auto (the strategy's default), else id + 1 */
    int exchange_name;       /* sync.exchange: 0 = auto, else loco_outer_exchange + 1 */
    int kv_src_count; /* entries given for model.kv_src (0 = default identity) */
    loco_config_origin origin[LOCO_CONFIG_MAX_KEYS]; /* indexed like the schema */
} loco_config;

/* Fill every field with its default. */
void loco_config_defaults(loco_config *cfg);

/* Load a YAML file over the defaults, then apply `overrides` ("a.b=v" strings), then validate
 * consistency. Every failure — an unreadable or oversized file included — returns
 * LOCO_ERR_CONFIG (exit code 2) with err naming file:line:column, the key, the problem and what
 * is allowed; cfg is then unspecified. */
loco_status loco_config_load(loco_config *cfg, const char *path, const char *const *overrides,
                             int n_overrides, loco_error *err);

/* Parse YAML text (name is used in messages). Same contract as loco_config_load. */
loco_status loco_config_load_string(loco_config *cfg, const char *name, const char *text,
                                    size_t len, const char *const *overrides, int n_overrides,
                                    loco_error *err);

/* Apply one "section.key=value" override (already-loaded cfg; validate afterwards). */
loco_status loco_config_set(loco_config *cfg, const char *assignment, loco_error *err);

/* Whether a key was given in the file or by --set (false: it kept its default). */
bool loco_config_key_set(const loco_config *cfg, const char *path);

/* Check cross-key consistency (n_head % n_kv_head, kv_src, seq_len <= ctx, ...). */
loco_status loco_config_validate(const loco_config *cfg, loco_error *err);

/* Point cfg->transport.comm at cfg's own link rules (call again after copying a loco_config: the
 * communicator config holds a pointer into the struct). */
void loco_config_bind_transport(loco_config *cfg);

/* Write every key with its resolved value as YAML that loco_config_load accepts again. */
void loco_config_write_yaml(const loco_config *cfg, FILE *out);

/* Write the resolved config to DIR/config.yaml atomically. */
loco_status loco_config_save(const loco_config *cfg, const char *dir, loco_error *err);

/* Print every key, its type, default and allowed values (for `loco train --help-config`). */
void loco_config_print_schema(FILE *out);

#endif /* LOCO_SRC_CONFIG_H */
