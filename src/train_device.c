/* src/train_device.c — `loco train` with train.device: cuda: one worker per GPU.
 *
 * The model lives on the GPU (loco_model_init_device) and every inner step stays there:
 * forward, backward, global-norm clipping and the inner optimizer (optim's _cuda functions on
 * the device buffers). The sync strategy still runs on the host, unchanged: each step is handed
 * to loco_sync_step with inner_done set (optim/sync.h), and only on the steps where the strategy
 * reads or writes the replica (loco_sync_step_uses_params: diloco's round ends) do the fp32
 * parameters travel device -> host before it and host -> device after it. So a DiLoCo worker
 * copies its parameters twice per round of H steps; the pseudo-gradient, its (optional) codec,
 * the ring over loco's TCP collectives and the outer Nesterov step are the CPU strategy's own
 * code, and theta_global stays bit-identical on every worker, GPU or CPU.
 *
 * With sync.exchange allgather (the default for a GPU worker whose codec the GPU encodes) the
 * parameters do not leave the device at a round end: the strategy calls device_encode_delta,
 * which forms Delta = theta_global - theta_local on the GPU (theta_global's device copy is
 * refreshed only when the strategy's version of it changes), encodes it there with the GPU
 * codec (byte-identical to the CPU codec) and copies only the message to the host; after the
 * outer step the new theta_global goes host -> device once and becomes both the replica and
 * the device copy of theta_global.
 *
 * Streaming DiLoCo works the same way: its parameters cross where a fragment's pseudo-gradient
 * is prepared and where an average is mixed in (loco_sync_step_uses_params). ddp and demo go
 * the other way round (device_grads_step): every step the gradient crosses to the host. ddp
 * averages it over the workers, and the average goes back up to be clipped and applied on the
 * GPUs; its shared state (replica and moments) crosses at sync points
 * (train_device_state_to_host, train_device_state_written). demo steps the parameters itself,
 * with its own momentum, on the host: the CPU strategy runs unchanged (DCT top-k, the
 * all-gather, the sign step on the host parameters, which stay the authoritative copy), and the
 * parameters go back up to every GPU of the worker.
 *
 * A hung GPU (a kernel that never ends, or an NCCL collective one GPU of the worker never joins)
 * blocks the host inside CUDA or NCCL with no error to return. The watchdog (train.gpu_timeout)
 * turns that into a lost worker: when one lanes_run job outlives the timeout it ends this
 * worker's process, which the other workers recover from as from any death (DESIGN.md, fault
 * tolerance), instead of a process that holds its GPUs and its place in the group forever.
 *
 * The worker's host optimizer (worker.optim) keeps its role for checkpoints: train_device_to_host
 * copies the device optimizer's moments and step count into it (and the parameters into the
 * model's host mirror) before a checkpoint or the strategy's finish, train_device_from_host
 * copies them back after --resume.
 */
#include "cuda/cuda.h"
#include "src/train_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One GPU of a worker (train.gpus_per_worker G: a lane per GPU, each with a replica, its own
 * share of the batch and its own copy of the inner optimizer; the gradients are averaged by NCCL
 * as the backward pass finishes them, so every lane's replica stays bit-identical). Lane 0 is
 * the worker's model (w->model) and optimizer (train_device.optim): the sync strategy, the
 * evaluation and checkpoints see lane 0 only; the other lanes follow whenever the host writes
 * the replica. Lane g > 0 runs in its own thread, on its own device. */
typedef enum lane_job {
    LANE_OPEN,
    LANE_NCCL,
    LANE_STEP,          /* gradient and update (none, diloco, streaming) */
    LANE_GRADS,         /* gradient only (ddp, demo) */
    LANE_APPLY_AVERAGE, /* the workers' average up, then the update (ddp) */
    LANE_UPLOAD,
    LANE_UPLOAD_ALL
} lane_job;

static const char *const lane_job_names[] = {"opening", "NCCL set-up", "step", "gradient",
                                             "average and update", "parameter upload",
                                             "state upload"};

/* train.gpu_timeout: ends the process when one lanes_run job outlives the timeout (file
 * comment). deadline_ns is 0 while no job is in flight. */
typedef struct gpu_watchdog {
    pthread_mutex_t mu;
    pthread_cond_t wake; /* on CLOCK_MONOTONIC, as loco_now_ns */
    bool started, stop;
    double timeout_s;
    uint64_t deadline_ns;
    lane_job job;
    int64_t step;
    int rank;
    pthread_t thread;
} gpu_watchdog;

typedef struct gpu_lane {
    int index, device;
    worker *w;
    loco_model *model;      /* lane 0: w->model (not owned) */
    loco_optim *optim;      /* lane 0: &train_device.optim; else &own_optim */
    loco_optim own_optim;
    loco_cuda_nccl *nccl;   /* NULL with one GPU */
    const uint8_t *nccl_id; /* LANE_NCCL's input */
    loco_status hook_st;    /* the grad hook's first failure in this step */
    loco_error hook_err;
    lane_job job;           /* what lanes_run asks */
    float loss;             /* LANE_STEP's outputs */
    double norm;
    loco_status st;
    loco_error err;
    pthread_t thread;
} gpu_lane;

struct train_device {
    loco_optim optim;   /* the inner optimizer, its moments on the GPU */
    int gpus;           /* lanes */
    gpu_lane lanes[LOCO_MAX_WORKER_GPUS];
    float *pinned;      /* the model's host parameters, page-locked (NULL if the driver refused) */
    int rank;
    int64_t crossings;  /* steps whose parameters went to the host and back */
    double copy_s;      /* seconds copying parameters device <-> host on those steps */
    double strategy_s;  /* seconds in loco_sync_step on those steps (communication included) */
    /* the pseudo-gradient encoded on the device (sync.exchange allgather with a GPU codec) */
    bool encodes;
    loco_sync_delta_encoder encoder;
    float *global_dev;       /* (n) theta_global as of global_version */
    uint64_t global_version; /* 0: global_dev holds nothing yet */
    uint8_t *payload_dev;    /* the codec's device scratch, allocated at the first encode */
    uint64_t message_bytes;  /* encoded messages copied device -> host */
    int64_t messages;
    gpu_watchdog watchdog;
};

loco_status train_device_check(const loco_config *cfg, loco_error *err)
{
    if (LOCO_DEVICE_CUDA != cfg->train.device) {
        return LOCO_OK;
    }
    if (!loco_cuda_built()) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "train.device: cuda, but this loco was built without CUDA "
                              "(rebuild with the CUDA toolkit: LOCO_CUDA=ON bash launch/setup.sh), "
                              "or set train.device: cpu");
    }
    if (0 == loco_cuda_device_count()) {
        return loco_error_set(err, LOCO_ERR_CUDA,
                              "train.device: cuda, but no CUDA device is visible to this process "
                              "(check nvidia-smi and CUDA_VISIBLE_DEVICES), or set "
                              "train.device: cpu");
    }
    if (cfg->train.gpus_per_worker > loco_cuda_device_count()) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "train.gpus_per_worker: %d, but this process sees %d GPU%s (one "
                              "NCCL communicator cannot hold a GPU twice); allowed here: at "
                              "most %d",
                              cfg->train.gpus_per_worker, loco_cuda_device_count(),
                              1 == loco_cuda_device_count() ? "" : "s",
                              loco_cuda_device_count());
    }
    return LOCO_OK;
}

int train_device_index(const loco_config *cfg, int rank)
{
    if (cfg->train.cuda_device >= 0) {
        return cfg->train.cuda_device;
    }
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    int index = (NULL != local ? atoi(local) : rank) * cfg->train.gpus_per_worker;
    int count = loco_cuda_device_count();
    return count > 0 ? index % count : index;
}

/* ---- the watchdog ----------------------------------------------------------------------- */

static void *watchdog_main(void *arg)
{
    gpu_watchdog *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        if (0 == d->deadline_ns) {
            pthread_cond_wait(&d->wake, &d->mu);
            continue;
        }
        if (loco_now_ns() >= d->deadline_ns) {
            /* The host is stuck inside CUDA or NCCL: nothing below can return. Say why, then
             * end the process as a crash would (the other workers' recovery takes it from
             * there; exit handlers could block on the same hung device). */
            fprintf(stderr,
                    "loco: worker %d: the GPU %s job of step %lld did not finish within "
                    "train.gpu_timeout = %g s (a hung GPU kernel, or an NCCL collective a GPU of "
                    "this worker never joined); ending this worker so the others carry on "
                    "without it\n",
                    d->rank, lane_job_names[d->job], (long long)d->step, d->timeout_s);
            fflush(stderr);
            _exit(1);
        }
        struct timespec until = {.tv_sec = (time_t)(d->deadline_ns / 1000000000u),
                                 .tv_nsec = (long)(d->deadline_ns % 1000000000u)};
        pthread_cond_timedwait(&d->wake, &d->mu, &until);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

static loco_status watchdog_start(gpu_watchdog *d, double timeout_s, int rank, loco_error *err)
{
    d->timeout_s = timeout_s;
    d->rank = rank;
    if (!(timeout_s > 0.0)) {
        return LOCO_OK; /* train.gpu_timeout 0: no watchdog */
    }
    pthread_condattr_t attr;
    if (0 != pthread_mutex_init(&d->mu, NULL) || 0 != pthread_condattr_init(&attr)) {
        return loco_error_set(err, LOCO_ERR_SYSTEM, "cannot set up the GPU watchdog");
    }
    int rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = 0 == rc ? pthread_cond_init(&d->wake, &attr) : rc;
    pthread_condattr_destroy(&attr);
    if (0 != rc) {
        pthread_mutex_destroy(&d->mu);
        return loco_error_set(err, LOCO_ERR_SYSTEM, "cannot set up the GPU watchdog");
    }
    if (0 != pthread_create(&d->thread, NULL, watchdog_main, d)) {
        pthread_cond_destroy(&d->wake);
        pthread_mutex_destroy(&d->mu);
        return loco_error_set(err, LOCO_ERR_SYSTEM, "cannot start the GPU watchdog thread");
    }
    d->started = true;
    return LOCO_OK;
}

static void watchdog_stop(gpu_watchdog *d)
{
    if (!d->started) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->mu);
    d->started = false;
}

/* A job of step `step` begins (the clock starts) or, with begin false, has ended. */
static void watchdog_job(gpu_watchdog *d, bool begin, lane_job job, int64_t step)
{
    if (!d->started) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->job = job;
    d->step = step;
    d->deadline_ns = begin ? loco_now_ns() + (uint64_t)(d->timeout_s * 1e9) : 0;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->mu);
}

/* train.hang_at_step (tests): the worker's last GPU stops answering — its thread never returns
 * from this step's job, so with several GPUs its peers block in NCCL waiting for it. */
static void lane_maybe_hang(const gpu_lane *L)
{
    const worker *w = L->w;
    if (L->index != w->cfg.train.gpus_per_worker - 1 || w->cfg.train.hang_at_step < 0 ||
        w->step != w->cfg.train.hang_at_step || !w->fault_target) {
        return;
    }
    LOCO_WARN("worker %d: GPU %d of this worker hangs at step %lld (train.hang_at_step)", w->rank,
              L->index, (long long)w->step);
    for (;;) {
        pause();
    }
}

/* ---- the lanes of a worker of several GPUs ---------------------------------------------- */

/* The grad hook: average a finished range of this lane's gradient over the lanes (NCCL). */
static void lane_average_range(void *user, int layer, size_t begin, size_t end)
{
    gpu_lane *L = user;
    (void)layer;
    if (LOCO_OK == L->hook_st) {
        L->hook_st = loco_cuda_nccl_allreduce_mean(L->nccl, loco_model_device_grads(L->model) +
                                                               begin,
                                                   end - begin, &L->hook_err);
    }
}

/* Lane g > 0 comes to life on its device with lane 0's parameters and an optimizer like its. */
static loco_status lane_open(gpu_lane *L, loco_error *err)
{
    worker *w = L->w;
    const loco_train_params *t = &w->cfg.train;
    int rows = t->batch / t->gpus_per_worker;
    LOCO_TRY(loco_model_init_device(&L->model, &w->cfg.model, rows, t->seq_len, LOCO_DEVICE_CUDA,
                                    L->device, err));
    LOCO_TRY(loco_cuda_gpt_upload_params(loco_model_cuda_gpt(L->model),
                                         loco_model_params(w->model), err));
    L->optim = &L->own_optim;
    return loco_optim_init_cuda(L->optim, &w->cfg.optim, loco_model_num_params(L->model),
                                loco_model_cuda_ctx(L->model), loco_model_tensors(L->model), err);
}

/* This lane's gradient on its share of the batch: forward, backward (with the averages over the
 * lanes queued by the hook). With several lanes every lane runs the backward pass even on a
 * non-finite loss (NCCL needs every lane's averages); the averaged gradient is then non-finite
 * everywhere and every lane skips the update alike. *has_grads: false when one GPU skipped the
 * backward pass of a non-finite loss (its gradient stays zero). */
static loco_status lane_grads(gpu_lane *L, bool *has_grads, loco_error *err)
{
    worker *w = L->w;
    const loco_train_params *t = &w->cfg.train;
    int gpus = t->gpus_per_worker, rows = t->batch / gpus;
    size_t off = (size_t)L->index * (size_t)rows * (size_t)t->seq_len;
    loco_model *m = L->model;
    L->loss = NAN;
    L->norm = NAN;
    L->hook_st = LOCO_OK;
    *has_grads = false;
    LOCO_TRY(loco_model_forward(m, w->inputs + off, w->targets + off, rows, t->seq_len, &L->loss,
                                err));
    loco_model_zero_grad(m);
    if (!isfinite(L->loss) && 1 == gpus) {
        return LOCO_OK;
    }
    LOCO_TRY(loco_model_backward(m, err));
    if (NULL != L->nccl) {
        if (LOCO_OK != L->hook_st) {
            return loco_error_set(err, L->hook_st, "%s", L->hook_err.msg);
        }
        LOCO_TRY(loco_cuda_nccl_join(L->nccl, err));
    }
    *has_grads = true;
    return LOCO_OK;
}

/* Clip the lane's device gradient and take the inner optimizer's step (a non-finite norm skips
 * it; L->norm is then NaN). */
static loco_status lane_apply(gpu_lane *L, loco_error *err)
{
    worker *w = L->w;
    loco_model *m = L->model;
    float *grads = loco_model_device_grads(m);
    loco_error clip_err = {0};
    loco_status st = loco_grad_clip_cuda(loco_model_cuda_ctx(m), grads, loco_model_num_params(m),
                                         w->cfg.optim.grad_clip, &L->norm, &clip_err);
    if (LOCO_OK == st) {
        return loco_optim_step_cuda(L->optim, loco_model_device_params(m),
                                    loco_model_device_params_bf16(m), grads,
                                    loco_optim_lr(&w->cfg.optim, w->step), err);
    }
    L->norm = NAN;
    return LOCO_ERR_NONFINITE == st ? LOCO_OK : loco_error_set(err, st, "%s", clip_err.msg);
}

/* One inner step on this lane: its gradient, then the update. */
static loco_status lane_step(gpu_lane *L, loco_error *err)
{
    bool has_grads = false;
    LOCO_TRY(lane_grads(L, &has_grads, err));
    return has_grads ? lane_apply(L, err) : LOCO_OK;
}

/* ddp: the workers' average (lane 0's host gradient buffer) up to this lane, then the update. */
static loco_status lane_apply_average(gpu_lane *L, loco_error *err)
{
    loco_model *m = L->model;
    LOCO_TRY(loco_cuda_upload(loco_model_cuda_ctx(m), loco_model_device_grads(m),
                              loco_model_grads(L->w->model),
                              loco_model_num_params(m) * sizeof(float), err));
    return lane_apply(L, err);
}

/* Lane g > 0 takes lane 0's host parameters (and, for LANE_UPLOAD_ALL, the host optimizer's
 * moments and step count). */
static loco_status lane_upload(gpu_lane *L, bool moments, loco_error *err)
{
    worker *w = L->w;
    LOCO_TRY(loco_cuda_gpt_upload_params(loco_model_cuda_gpt(L->model),
                                         loco_model_params(w->model), err));
    if (!moments) {
        return LOCO_OK;
    }
    size_t bytes = L->optim->n * sizeof(float);
    for (int i = 0; i < L->optim->slots; i++) {
        LOCO_TRY(loco_cuda_upload(loco_model_cuda_ctx(L->model), loco_optim_slot(L->optim, i),
                                  loco_optim_slot(&w->optim, i), bytes, err));
    }
    L->optim->step = w->optim.step;
    return LOCO_OK;
}

static void lane_do(gpu_lane *L)
{
    loco_error *err = &L->err;
    L->st = LOCO_OK;
    if (L->index > 0 && NULL != L->model) { /* this thread drives the lane's device */
        L->st = loco_cuda_bind(loco_model_cuda_ctx(L->model), err);
    }
    if (LOCO_OK != L->st) {
        return;
    }
    switch (L->job) {
    case LANE_OPEN: L->st = lane_open(L, err); break;
    case LANE_NCCL: {
        int gpus = L->w->cfg.train.gpus_per_worker;
        L->st = loco_cuda_nccl_init(&L->nccl, loco_model_cuda_ctx(L->model), L->nccl_id, gpus,
                                    L->index, err);
        if (LOCO_OK == L->st) {
            loco_cuda_gpt_set_grad_hook(loco_model_cuda_gpt(L->model), lane_average_range, L);
        }
        break;
    }
    case LANE_STEP:
        lane_maybe_hang(L);
        L->st = lane_step(L, err);
        break;
    case LANE_GRADS: {
        lane_maybe_hang(L);
        bool has_grads = false;
        L->st = lane_grads(L, &has_grads, err);
        break;
    }
    case LANE_APPLY_AVERAGE: L->st = lane_apply_average(L, err); break;
    case LANE_UPLOAD: L->st = lane_upload(L, false, err); break;
    case LANE_UPLOAD_ALL: L->st = lane_upload(L, true, err); break;
    }
}

static void *lane_thread(void *arg)
{
    lane_do(arg);
    return NULL;
}

/* Run `job` on lanes first .. gpus-1 at once (lane 0, if asked, in this thread; the others in
 * their own threads) and wait for all; the first failure is returned with its message. */
static loco_status lanes_run_unwatched(train_device *dev, lane_job job, int first,
                                       loco_error *err)
{
    for (int g = first; g < dev->gpus; g++) {
        gpu_lane *L = &dev->lanes[g];
        L->job = job;
        if (g > 0 && 0 != pthread_create(&L->thread, NULL, lane_thread, L)) {
            for (int k = first > 0 ? first : 1; k < g; k++) {
                pthread_join(dev->lanes[k].thread, NULL);
            }
            return loco_error_set(err, LOCO_ERR_IO, "cannot start the thread of GPU lane %d", g);
        }
    }
    if (0 == first) {
        lane_do(&dev->lanes[0]);
    }
    for (int g = first > 0 ? first : 1; g < dev->gpus; g++) {
        pthread_join(dev->lanes[g].thread, NULL);
    }
    for (int g = first; g < dev->gpus; g++) {
        if (LOCO_OK != dev->lanes[g].st) {
            return loco_error_set(err, dev->lanes[g].st, "GPU %d of this worker: %s", g,
                                  dev->lanes[g].err.msg);
        }
    }
    return LOCO_OK;
}

/* lanes_run_unwatched under the watchdog's clock (train.gpu_timeout). */
static loco_status lanes_run(train_device *dev, lane_job job, int first, loco_error *err)
{
    watchdog_job(&dev->watchdog, true, job, dev->lanes[0].w->step);
    loco_status st = lanes_run_unwatched(dev, job, first, err);
    watchdog_job(&dev->watchdog, false, job, dev->lanes[0].w->step);
    return st;
}

/* The other lanes join: their replicas, optimizers and the NCCL communicator of all lanes. */
static loco_status lanes_open(worker *w, loco_error *err)
{
    train_device *dev = w->dev;
    int first = train_device_index(&w->cfg, w->rank), count = loco_cuda_device_count();
    for (int g = 0; g < dev->gpus; g++) {
        gpu_lane *L = &dev->lanes[g];
        L->index = g;
        L->device = count > 0 ? (first + g) % count : first + g;
        L->w = w;
    }
    dev->lanes[0].model = w->model;
    dev->lanes[0].optim = &dev->optim;
    if (dev->gpus < 2) {
        return LOCO_OK;
    }
    if (!loco_cuda_nccl_built()) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "train.gpus_per_worker %d needs NCCL, and this loco was built "
                              "without it; set train.gpus_per_worker: 1",
                              dev->gpus);
    }
    LOCO_TRY(lanes_run(dev, LANE_OPEN, 1, err));
    uint8_t id[LOCO_NCCL_ID_BYTES];
    LOCO_TRY(loco_cuda_nccl_unique_id(id, err));
    for (int g = 0; g < dev->gpus; g++) {
        dev->lanes[g].nccl_id = id;
    }
    LOCO_TRY(lanes_run(dev, LANE_NCCL, 0, err));
    return loco_cuda_bind(loco_model_cuda_ctx(w->model), err); /* this thread: lane 0's GPU */
}

static void lanes_free(train_device *dev)
{
    for (int g = 0; g < dev->gpus; g++) {
        gpu_lane *L = &dev->lanes[g];
        if (NULL != L->model) { /* NCCL and the lane's buffers live on its device */
            loco_cuda_bind(loco_model_cuda_ctx(L->model), NULL);
        }
        loco_cuda_nccl_free(L->nccl);
        if (g > 0) {
            loco_optim_free(&L->own_optim);
            loco_model_free(L->model);
        }
    }
    if (dev->gpus > 1 && NULL != dev->lanes[0].model) {
        loco_cuda_bind(loco_model_cuda_ctx(dev->lanes[0].model), NULL);
    }
}

/* loco_sync_delta_encoder.encode for a GPU worker (see the file comment). The gradient buffer
 * is the scratch for Delta: at a round end the step's gradient has been spent. */
static loco_status device_encode_delta(void *ctx, const float *global, uint64_t global_version,
                                       const loco_codec *codec, const loco_codec_ctx *cctx,
                                       uint8_t *out, size_t cap, size_t *len, loco_error *err)
{
    worker *w = ctx;
    train_device *dev = w->dev;
    loco_model *m = w->model;
    struct loco_cuda_ctx *cuda = loco_model_cuda_ctx(m);
    size_t n = loco_model_num_params(m);
    if (NULL == dev->payload_dev) {
        LOCO_TRY(loco_cuda_alloc((void **)&dev->payload_dev,
                                 loco_codec_cuda_scratch_bytes(codec, n), err));
    }
    if (global_version != dev->global_version) {
        LOCO_TRY(loco_cuda_upload(cuda, dev->global_dev, global, n * sizeof(float), err));
        dev->global_version = global_version;
    }
    float *delta = loco_model_device_grads(m);
    LOCO_TRY(loco_cuda_sub(cuda, delta, dev->global_dev, loco_model_device_params(m), n, err));
    LOCO_TRY(loco_codec_encode_cuda(codec, cuda, delta, n, cctx, dev->payload_dev, out, cap, len,
                                    err));
    dev->message_bytes += *len;
    dev->messages++;
    return LOCO_OK;
}

loco_status train_device_init(worker *w, loco_error *err)
{
    if (LOCO_DEVICE_CUDA != loco_model_device(w->model)) {
        return LOCO_OK;
    }
    w->dev = calloc(1, sizeof *w->dev);
    if (NULL == w->dev) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory");
    }
    w->dev->rank = w->rank;
    w->dev->gpus = w->cfg.train.gpus_per_worker;
    LOCO_TRY(watchdog_start(&w->dev->watchdog, w->cfg.train.gpu_timeout, w->rank, err));
    LOCO_TRY(loco_optim_init_cuda(&w->dev->optim, &w->cfg.optim, loco_model_num_params(w->model),
                                  loco_model_cuda_ctx(w->model), loco_model_tensors(w->model),
                                  err));
    LOCO_TRY(lanes_open(w, err));
    size_t n = loco_model_num_params(w->model);
    w->dev->encodes = loco_sync_takes_delta_encoder(w->sync) &&
                      loco_codec_cuda_encodes(&w->cfg.sync.codec, n);
    if (w->dev->encodes) {
        LOCO_TRY(loco_cuda_alloc((void **)&w->dev->global_dev, n * sizeof(float), err));
        w->dev->encoder = (loco_sync_delta_encoder){.ctx = w, .encode = device_encode_delta};
    }
    /* the parameters cross at every round end; ddp's and demo's gradients every step:
     * page-locked, the copies run at bus speed */
    loco_error pin_err = {0};
    bool grads_cross = !loco_sync_accepts_inner_done(w->cfg.sync.strategy);
    float *host = grads_cross ? loco_model_grads(w->model) : loco_model_params(w->model);
    if (LOCO_OK == loco_cuda_pin(host, loco_model_num_params(w->model) * sizeof(float),
                                 &pin_err)) {
        w->dev->pinned = host;
    } else {
        LOCO_WARN("%s (%s copies will be slower)", pin_err.msg,
                  grads_cross ? "gradient" : "parameter");
    }
    if (0 == w->rank) {
        LOCO_INFO("training on %s (GPU %d%s of worker 0): %zu parameters, inner steps on the "
                  "device%s",
                  loco_cuda_ctx_device_name(loco_model_cuda_ctx(w->model)),
                  train_device_index(&w->cfg, w->rank), w->dev->gpus > 1 ? " and the next" : "",
                  loco_model_num_params(w->model),
                  w->dev->gpus > 1 ? ", gradients averaged over the worker's GPUs by NCCL" : "");
    }
    return LOCO_OK;
}

void train_device_free(train_device *dev)
{
    if (NULL == dev) {
        return;
    }
    if (dev->crossings > 0) {
        LOCO_INFO("worker %d: %lld steps crossed to the host and back (diloco, streaming: "
                  "round ends; ddp, demo: every step): %.2f s copying, %.2f s in the sync "
                  "strategy",
                  dev->rank, (long long)dev->crossings, dev->copy_s, dev->strategy_s);
    }
    if (dev->messages > 0) {
        LOCO_INFO("worker %d: %lld pseudo-gradients encoded on the GPU: %.2f MiB of messages "
                  "to the host (%.2f MiB each)",
                  dev->rank, (long long)dev->messages, (double)dev->message_bytes / 1048576.0,
                  (double)dev->message_bytes / 1048576.0 / (double)dev->messages);
    }
    watchdog_stop(&dev->watchdog);
    loco_cuda_free(dev->payload_dev);
    loco_cuda_free(dev->global_dev);
    loco_cuda_unpin(dev->pinned);
    lanes_free(dev);
    loco_optim_free(&dev->optim);
    free(dev);
}

loco_status train_device_params_to_host(worker *w, loco_error *err)
{
    if (NULL == w->dev) {
        return LOCO_OK;
    }
    return loco_cuda_gpt_download_params(loco_model_cuda_gpt(w->model),
                                         loco_model_params(w->model), err);
}

loco_status train_device_to_host(worker *w, loco_error *err)
{
    if (NULL == w->dev) {
        return LOCO_OK;
    }
    LOCO_TRY(train_device_params_to_host(w, err));
    loco_optim *dev = &w->dev->optim;
    size_t bytes = dev->n * sizeof(float);
    for (int i = 0; i < dev->slots; i++) {
        LOCO_TRY(loco_cuda_download(loco_model_cuda_ctx(w->model), loco_optim_slot(&w->optim, i),
                                    loco_optim_slot(dev, i), bytes, err));
    }
    w->optim.step = dev->step;
    return LOCO_OK;
}

loco_status train_device_from_host(worker *w, loco_error *err)
{
    if (NULL == w->dev) {
        return LOCO_OK;
    }
    LOCO_TRY(loco_model_upload_params(w->model, err));
    loco_optim *dev = &w->dev->optim;
    size_t bytes = dev->n * sizeof(float);
    for (int i = 0; i < dev->slots; i++) {
        LOCO_TRY(loco_cuda_upload(loco_model_cuda_ctx(w->model), loco_optim_slot(dev, i),
                                  loco_optim_slot(&w->optim, i), bytes, err));
    }
    dev->step = w->optim.step;
    return lanes_run(w->dev, LANE_UPLOAD_ALL, 1, err); /* the worker's other GPUs */
}

loco_status train_device_state_to_host(worker *w, loco_error *err)
{
    if (NULL == w->dev || !loco_sync_averages_for_caller(w->cfg.sync.strategy)) {
        return LOCO_OK; /* diloco and streaming keep their shared state on the host */
    }
    return train_device_to_host(w, err);
}

loco_status train_device_state_written(worker *w, loco_error *err)
{
    if (NULL != w->dev && loco_sync_averages_for_caller(w->cfg.sync.strategy)) {
        return train_device_from_host(w, err); /* ddp: replica and moments are shared state */
    }
    return train_device_replica_written(w, err);
}

loco_status train_device_replica_written(worker *w, loco_error *err)
{
    LOCO_TRY(loco_model_upload_params(w->model, err)); /* no-op on the CPU */
    return NULL != w->dev ? lanes_run(w->dev, LANE_UPLOAD, 1, err) : LOCO_OK;
}

/* ddp and demo on GPUs: the worker's gradient (averaged over its GPUs by NCCL) crosses to the
 * host every step and the strategy takes it there. ddp (update_by_caller) averages it over the
 * workers (codec and error feedback included) and the average goes back up to every GPU of the
 * worker, which clips and steps there. demo steps the host parameters itself (its momentum,
 * exchange and sign step) and the parameters go back up; the device's inner optimizer is not
 * used. */
static loco_status device_grads_step(worker *w, float *loss, loco_sync_step_out *out,
                                     loco_error *err)
{
    train_device *dev = w->dev;
    loco_model *m = w->model;
    bool ddp = loco_sync_averages_for_caller(w->cfg.sync.strategy);
    LOCO_TRY(lanes_run(dev, LANE_GRADS, 0, err));
    float sum = 0.0f;
    for (int g = 0; g < dev->gpus; g++) {
        sum += dev->lanes[g].loss;
    }
    *loss = sum / (float)dev->gpus;
    double t0 = loco_now_s();
    LOCO_TRY(loco_cuda_gpt_download_grads(loco_model_cuda_gpt(m), loco_model_grads(m), err));
    double t1 = loco_now_s();
    loco_sync_step_in in = {.params = loco_model_params(m),
                            .grads = loco_model_grads(m),
                            .grads_finite = isfinite(*loss),
                            .optim = &w->optim,
                            .lr = loco_optim_lr(&w->cfg.optim, w->step),
                            .step = w->step,
                            .update_by_caller = ddp};
    LOCO_TRY(train_sync_step(w, &in, out, err));
    double t2 = loco_now_s();
    if (ddp) {
        LOCO_TRY(lanes_run(dev, LANE_APPLY_AVERAGE, 0, err));
        out->grad_norm = dev->lanes[0].norm; /* the average's, before clipping */
        out->skipped = !isfinite(out->grad_norm);
    } else {
        LOCO_TRY(train_device_replica_written(w, err));
    }
    dev->crossings++;
    dev->copy_s += (t1 - t0) + (ddp ? 0.0 : loco_now_s() - t2);
    dev->strategy_s += t2 - t1;
    return LOCO_OK;
}

loco_status train_device_step(worker *w, float *loss, loco_sync_step_out *out, loco_error *err)
{
    if (!loco_sync_accepts_inner_done(w->cfg.sync.strategy)) {
        return device_grads_step(w, loss, out, err); /* ddp, demo */
    }
    loco_model *m = w->model;
    size_t n = loco_model_num_params(m);
    float lr = loco_optim_lr(&w->cfg.optim, w->step);
    /* the inner step on every GPU of the worker, each on its share of the batch */
    train_device *dev = w->dev;
    LOCO_TRY(lanes_run(dev, LANE_STEP, 0, err));
    float sum = 0.0f;
    for (int g = 0; g < dev->gpus; g++) {
        sum += dev->lanes[g].loss;
    }
    *loss = sum / (float)dev->gpus;
    bool finite = isfinite(*loss);
    double norm = dev->lanes[0].norm; /* the averaged gradient's: the same on every lane */
    /* The strategy sees the replica only on the steps where it reads or writes it; with the
     * pseudo-gradient encoded here it only writes it. */
    bool uses = loco_sync_step_uses_params(w->sync, w->step);
    double t0 = loco_now_s();
    if (uses && !dev->encodes) {
        LOCO_TRY(train_device_params_to_host(w, err));
    }
    double t1 = loco_now_s();
    loco_sync_step_in in = {.params = loco_model_params(m),
                            .grads = NULL,
                            .grads_finite = finite,
                            .optim = &w->optim,
                            .lr = lr,
                            .step = w->step,
                            .inner_done = true,
                            .inner_grad_norm = norm,
                            .delta_encoder = dev->encodes ? &dev->encoder : NULL};
    LOCO_TRY(train_sync_step(w, &in, out, err));
    double t2 = loco_now_s();
    if (uses) {
        LOCO_TRY(train_device_replica_written(w, err));
        if (dev->encodes) { /* the replica restarted from theta_global: keep the copy */
            LOCO_TRY(loco_cuda_copy(loco_model_cuda_ctx(m), dev->global_dev,
                                    loco_model_device_params(m), n * sizeof(float), err));
            dev->global_version = loco_sync_global_version(w->sync);
        }
        dev->crossings++;
        dev->copy_s += (t1 - t0) + (loco_now_s() - t2);
        dev->strategy_s += t2 - t1;
    }
    return LOCO_OK;
}
