/* tests/tools/gpu_worker.c — several GPUs of one host as one worker: one process per GPU under
 * launch/loco-mpirun, the NCCL communicator bootstrapped through loco's own collectives (rank 0's
 * NCCL id travels by loco_broadcast; no port is hard-coded), gradients averaged by NCCL layer by
 * layer as the backward pass finishes them (overlapped; --no-overlap: one average after the
 * backward pass, for comparison). Trains the model on random tokens (each GPU its own batch) with
 * clipping and AdamW on the device, prints the loss per step and the worker's tokens/s, and checks
 * that every GPU ends with bit-identical parameters (XXH64 digests gathered by loco_allgather).
 *
 *   launch/loco-mpirun -np 2 build/tools/gpu_worker [--steps 20] [--warmup 5] [--batch 16]
 *       [--seq 1024] [--layers 12] [--width 768] [--heads 12] [--vocab 50304] [--no-overlap]
 *
 * Rank 0 prints one final line: gpu_worker: GPUS N, tokens/s X, overlap yes|no, identical yes|no.
 * Exit status 0 only if the run finished and the parameters are identical everywhere.
 */
#include "base/base.h"
#include "collectives/comm.h"
#include "cuda/cuda.h"
#include "optim/optim.h"
#include "src/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker_args {
    loco_model_config cfg;
    int steps, warmup, batch, seq;
    bool overlap;
} worker_args;

static int parse_args(int argc, char **argv, worker_args *a)
{
    loco_model_config_default(&a->cfg);
    a->cfg.n_layer = 12;
    a->cfg.n_embd = 768;
    a->cfg.n_head = 12;
    a->cfg.vocab = 50304;
    a->steps = 20;
    a->warmup = 5;
    a->batch = 16;
    a->seq = 1024;
    a->overlap = true;
    struct {
        const char *flag;
        int *field;
    } ints[] = {{"--steps", &a->steps},         {"--warmup", &a->warmup},
                {"--batch", &a->batch},         {"--seq", &a->seq},
                {"--layers", &a->cfg.n_layer}, {"--width", &a->cfg.n_embd},
                {"--heads", &a->cfg.n_head},   {"--vocab", &a->cfg.vocab}};
    for (int i = 1; i < argc; i++) {
        size_t k = 0;
        while (k < sizeof ints / sizeof ints[0] && 0 != strcmp(argv[i], ints[k].flag)) {
            k++;
        }
        if (k < sizeof ints / sizeof ints[0] && i + 1 < argc) {
            *ints[k].field = atoi(argv[++i]);
        } else if (0 == strcmp(argv[i], "--no-overlap")) {
            a->overlap = false;
        } else {
            fprintf(stderr, "gpu_worker: unknown or incomplete option '%s'\n", argv[i]);
            return 2;
        }
    }
    a->cfg.n_kv_head = a->cfg.n_head;
    a->cfg.ctx = a->seq;
    loco_error err = {0};
    if (LOCO_OK != loco_model_config_validate(&a->cfg, &err) || a->steps < 1 || a->batch < 1) {
        fprintf(stderr, "gpu_worker: %s\n", err.msg[0] ? err.msg : "bad --steps or --batch");
        return 2;
    }
    return 0;
}

/* The grad hook: average each range of the gradient buffer as soon as backward finished it. */
typedef struct overlap_ctx {
    loco_cuda_nccl *nccl;
    float *grads; /* device */
    loco_status st;
    loco_error err;
} overlap_ctx;

static void average_range(void *user, int layer, size_t begin, size_t end)
{
    overlap_ctx *o = user;
    (void)layer;
    if (LOCO_OK == o->st) {
        o->st = loco_cuda_nccl_allreduce_mean(o->nccl, o->grads + begin, end - begin, &o->err);
    }
}

static int fail(int rank, const char *what, const loco_error *err, loco_status st)
{
    fprintf(stderr, "gpu_worker[%d]: %s: %s\n", rank, what, loco_error_msg(err, st));
    return 1;
}

int main(int argc, char **argv)
{
    worker_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (0 != rc) {
        return rc;
    }
    loco_error err = {0};
    loco_comm_config cc = LOCO_COMM_CONFIG_INIT;
    loco_comm_t comm = NULL;
    loco_status st = loco_comm_init(&comm, &cc, &err);
    if (LOCO_OK != st) {
        return fail(-1, "bootstrap", &err, st);
    }
    int rank = loco_comm_rank(comm), world = loco_comm_size(comm);
    int gpus = loco_cuda_device_count();
    if (0 == gpus) {
        loco_comm_free(comm);
        return fail(rank, "no CUDA device", &err, LOCO_ERR_CUDA);
    }
    const char *local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    int device = (NULL != local ? atoi(local) : rank) % gpus;

    /* The NCCL id: made by rank 0, carried to the others by loco's own collectives. */
    uint8_t id[LOCO_NCCL_ID_BYTES] = {0};
    if (0 == rank) {
        st = loco_cuda_nccl_unique_id(id, &err);
    }
    if (LOCO_OK == st) {
        st = loco_broadcast(comm, id, sizeof id, LOCO_DTYPE_BYTE, 0, NULL);
    }
    loco_model *m = NULL;
    if (LOCO_OK == st) {
        st = loco_model_init_device(&m, &a.cfg, a.batch, a.seq, LOCO_DEVICE_CUDA, device, &err);
    }
    if (LOCO_OK == st) {
        st = loco_model_init_weights(m, 0); /* the same seed: every GPU starts identical */
    }
    loco_cuda_nccl *nccl = NULL;
    if (LOCO_OK == st) {
        st = loco_cuda_nccl_init(&nccl, loco_model_cuda_ctx(m), id, world, rank, &err);
    }
    loco_optim opt;
    memset(&opt, 0, sizeof opt);
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.schedule = LOCO_LR_CONSTANT;
    p.warmup_steps = 0;
    size_t n = NULL != m ? loco_model_num_params(m) : 0, BT = (size_t)a.batch * a.seq;
    if (LOCO_OK == st) {
        st = loco_optim_init_cuda(&opt, &p, n, loco_model_cuda_ctx(m), loco_model_tensors(m),
                                  &err);
    }
    uint16_t *data = malloc((BT + 1) * sizeof(uint16_t));
    if (LOCO_OK != st || NULL == data) {
        return fail(rank, "setup", &err, NULL == data ? LOCO_ERR_NOMEM : st);
    }
    overlap_ctx ov = {nccl, loco_model_device_grads(m), LOCO_OK, {0}};
    if (a.overlap) {
        loco_cuda_gpt_set_grad_hook(loco_model_cuda_gpt(m), average_range, &ov);
    }
    loco_cuda_ctx *ctx = loco_model_cuda_ctx(m);
    loco_rng rng;
    loco_rng_init(&rng, 1, (uint64_t)rank); /* each GPU its own tokens */
    double t0 = 0.0;
    float loss = 0.0f;
    for (int s = 0; LOCO_OK == st && s < a.warmup + a.steps; s++) {
        if (s == a.warmup) {
            st = loco_cuda_sync(ctx, &err);
            t0 = loco_now_s();
        }
        for (size_t i = 0; i <= BT; i++) {
            data[i] = (uint16_t)loco_rng_below(&rng, (uint32_t)a.cfg.vocab);
        }
        loco_model_zero_grad(m);
        if (LOCO_OK == st) {
            st = loco_model_forward(m, data, data + 1, a.batch, a.seq, &loss, &err);
        }
        if (LOCO_OK == st) {
            st = loco_model_backward(m, &err); /* with overlap, the hook queues the averages */
        }
        if (LOCO_OK == st) {
            st = a.overlap ? ov.st
                           : loco_cuda_nccl_allreduce_mean(nccl, ov.grads, n, &err);
            err = a.overlap && LOCO_OK != ov.st ? ov.err : err;
        }
        if (LOCO_OK == st) {
            st = loco_cuda_nccl_join(nccl, &err);
        }
        if (LOCO_OK == st) {
            st = loco_grad_clip_cuda(ctx, ov.grads, n, 1.0f, NULL, &err);
        }
        if (LOCO_OK == st) {
            st = loco_optim_step_cuda(&opt, loco_model_device_params(m),
                                      loco_model_device_params_bf16(m), ov.grads, p.lr, &err);
        }
        if (LOCO_OK == st && 0 == rank) {
            printf("step %3d  loss %.4f (rank 0's batch)\n", s, loss);
            fflush(stdout);
        }
    }
    if (LOCO_OK == st) {
        st = loco_cuda_sync(ctx, &err);
    }
    double elapsed = loco_now_s() - t0;
    if (LOCO_OK != st) {
        return fail(rank, "training", &err, st);
    }
    /* Every GPU must hold the same parameters: compare digests. */
    st = loco_model_download(m, &err);
    uint64_t digest = LOCO_OK == st ? loco_hash64(loco_model_params(m), n * sizeof(float), 0) : 0;
    uint64_t *all = calloc((size_t)world, sizeof(uint64_t));
    if (LOCO_OK == st && NULL != all) {
        st = loco_allgather(comm, &digest, sizeof digest, all, LOCO_DTYPE_BYTE, NULL);
    }
    bool identical = LOCO_OK == st && NULL != all;
    for (int r = 0; identical && r < world; r++) {
        identical = all[r] == digest;
    }
    if (0 == rank) {
        double tps = (double)world * a.steps * (double)BT / elapsed;
        printf("gpu_worker: GPUs %d, tokens/s %.0f (%.1f ms/step), overlap %s, identical %s, "
               "final loss %.4f\n",
               world, tps, 1e3 * elapsed / a.steps, a.overlap ? "yes" : "no",
               identical ? "yes" : "no", loss);
    }
    free(all);
    free(data);
    loco_optim_free(&opt);
    loco_cuda_nccl_free(nccl);
    loco_model_free(m);
    loco_comm_free(comm);
    return identical ? 0 : 1;
}
