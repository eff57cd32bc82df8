/* bench/bench_gpu.c — `loco bench gpu`: GPU training throughput of loco's model (the CUDA
 * backend of src/model.h, optimizer on device buffers) against PyTorch on the same card, shape
 * and batch, measured in the same run.
 *
 * Both sides train the GPT-2 124M shape by default (12 layers, 768 wide, 12 heads, T 1024,
 * vocabulary 50304) on random tokens: forward, backward, global-norm clipping (1.0) and AdamW
 * (lr 6e-4, betas 0.9/0.95, weight decay 0.1 on matrices), bf16 mixed precision with fp32 master
 * weights. PyTorch runs bench/torch_gpu.py (torch.compile, bf16 autocast, flash SDPA, fused
 * AdamW) in a child process after loco has released the GPU. MFU counts 6 N + 6 L C T flops per
 * token (N parameters; the causal half of the attention products, forward and backward) against
 * the card's dense bf16 peak.
 */
#include "bench/bench.h"
#include "cuda/cuda.h"
#include "optim/optim.h"
#include "src/model.h"

#if LOCO_HAVE_CUDA
#include "cuda/layers_cuda.h"

#include <cuda_runtime_api.h>
#endif

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gpu_args {
    loco_model_config cfg;
    int share, batch, seq, steps, warmup, device, compile, profile, kernels;
    loco_bench_common common; /* --json, --python, --torch-script, --no-torch */
} gpu_args;

static void gpu_usage(FILE *out)
{
    fprintf(out,
            "usage: loco bench gpu [options]\n\n"
            "GPU training throughput (tokens/s and MFU: forward + backward + clip + AdamW) of\n"
            "loco's CUDA model and of PyTorch (bench/torch_gpu.py: torch.compile, bf16 autocast,\n"
            "flash SDPA, fused AdamW) on the same card, shape and batch.\n\n"
            "  --layers N      transformer blocks (12)\n"
            "  --width C       embedding width (768)\n"
            "  --heads H       query heads (12)\n"
            "  --kv-heads G    K/V heads (= heads)\n"
            "  --share S       layers per cross-layer K/V group (1)\n"
            "  --vocab V       vocabulary (50304)\n"
            "  --seq T         sequence length (1024)\n"
            "  --batch B       sequences per step (16)\n"
            "  --steps N       timed steps (20)\n"
            "  --warmup N      untimed steps first (5)\n"
            "  --device D      CUDA device (0)\n"
            "  --compile 0|1   torch.compile the PyTorch model (1)\n"
            "  --profile N     after the timed steps, N more with per-layer GPU timing (0)\n"
            "  --kernels 1     time the flash attention tile variants at this shape instead\n"
            "  --python PATH   interpreter with torch (default: $LOCO_PYTHON, python3)\n"
            "  --torch-script PATH   bench/torch_gpu.py (default: found next to the binary)\n"
            "  --no-torch      measure loco only\n"
            "  --json FILE     write the records\n");
}

static int parse_args(int argc, char **argv, gpu_args *a)
{
    loco_model_config_default(&a->cfg);
    a->cfg.n_layer = 12;
    a->cfg.n_embd = 768;
    a->cfg.n_head = 12;
    a->cfg.n_kv_head = 0;
    a->cfg.vocab = 50304;
    a->share = 1;
    a->batch = 16;
    a->seq = 1024;
    a->steps = 20;
    a->warmup = 5;
    a->compile = 1;
    const loco_bench_int_flag ints[] = {{"--layers", &a->cfg.n_layer, 1, LOCO_MAX_LAYERS},
                                        {"--width", &a->cfg.n_embd, 8, 1 << 16},
                                        {"--heads", &a->cfg.n_head, 1, 1 << 12},
                                        {"--kv-heads", &a->cfg.n_kv_head, 1, 1 << 12},
                                        {"--share", &a->share, 1, LOCO_MAX_LAYERS},
                                        {"--vocab", &a->cfg.vocab, 1, 65536},
                                        {"--seq", &a->seq, 1, 1 << 16},
                                        {"--batch", &a->batch, 1, 1 << 16},
                                        {"--steps", &a->steps, 1, 1 << 20},
                                        {"--warmup", &a->warmup, 0, 1 << 20},
                                        {"--device", &a->device, 0, 1023},
                                        {"--compile", &a->compile, 0, 1},
                                        {"--profile", &a->profile, 0, 1000},
                                        {"--kernels", &a->kernels, 0, 1}};
    int rc = loco_bench_parse_args("loco bench gpu", argc, argv, ints, sizeof ints / sizeof ints[0],
                                   &a->common, gpu_usage);
    return 0 != rc ? rc : loco_bench_model_config("loco bench gpu", &a->cfg, a->seq, a->share);
}

/* Dense bf16 peak of the card by name (datasheet, without sparsity), or 0 if unknown. */
static double peak_flops(const char *name)
{
    if (NULL != strstr(name, "H100") && NULL != strstr(name, "PCIe")) {
        return 756e12;
    }
    if (NULL != strstr(name, "H100") || NULL != strstr(name, "H200") ||
        NULL != strstr(name, "H800")) {
        return 989.4e12;
    }
    if (NULL != strstr(name, "A100")) {
        return 312e12;
    }
    return 0.0;
}

static double flops_per_token(const gpu_args *a, size_t n_params)
{
    return 6.0 * (double)n_params + 6.0 * a->cfg.n_layer * a->cfg.n_embd * (double)a->seq;
}

/* ---------------------------------------------------------------------------------------------
 * loco's side */

typedef struct gpu_timing {
    double tokens_per_s, step_ms, forward_ms;
    float loss;
    size_t n_params;
    char device[256];
} gpu_timing;

static loco_status run_loco(const gpu_args *a, gpu_timing *out, loco_error *err)
{
    loco_model *m = NULL;
    LOCO_TRY(loco_model_init_device(&m, &a->cfg, a->batch, a->seq, LOCO_DEVICE_CUDA, a->device,
                                    err));
    loco_cuda_ctx *ctx = loco_model_cuda_ctx(m);
    snprintf(out->device, sizeof out->device, "%s", loco_cuda_ctx_device_name(ctx));
    size_t n = loco_model_num_params(m), BT = (size_t)a->batch * a->seq;
    out->n_params = n;
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.schedule = LOCO_LR_CONSTANT;
    p.warmup_steps = 0;
    loco_optim opt;
    memset(&opt, 0, sizeof opt);
    int timed_end = a->warmup + a->steps, total = timed_end + a->profile;
    uint16_t *data = malloc((size_t)total * (BT + 1) * sizeof(uint16_t));
    loco_status st = loco_model_init_weights(m, 0);
    if (LOCO_OK == st) {
        st = loco_optim_init_cuda(&opt, &p, n, ctx, loco_model_tensors(m), err);
    }
    if (LOCO_OK == st && NULL == data) {
        st = loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for the batches");
    }
    if (LOCO_OK == st) { /* every step's random tokens, drawn before the clock starts */
        loco_rng rng;
        loco_rng_init(&rng, 1, 0);
        for (size_t i = 0; i < (size_t)total * (BT + 1); i++) {
            data[i] = (uint16_t)loco_rng_below(&rng, (uint32_t)a->cfg.vocab);
        }
    }
    double t_start = 0.0, t_fwd = 0.0, elapsed = 0.0;
    for (int s = 0; LOCO_OK == st && s < total; s++) {
        if (s == a->warmup) {
            st = loco_cuda_sync(ctx, err);
            t_start = loco_now_s();
        }
        if (LOCO_OK == st && s == timed_end) { /* then the profiled steps */
            st = loco_cuda_sync(ctx, err);
            elapsed = loco_now_s() - t_start;
            if (LOCO_OK == st) {
                st = loco_cuda_gpt_profile(loco_model_cuda_gpt(m), true, err);
            }
        }
        const uint16_t *x = data + (size_t)s * (BT + 1);
        double t0 = loco_now_s();
        loco_model_zero_grad(m);
        if (LOCO_OK == st) {
            st = loco_model_forward(m, x, x + 1, a->batch, a->seq, &out->loss, err);
        }
        t_fwd += s >= a->warmup && s < timed_end ? loco_now_s() - t0 : 0.0;
        if (LOCO_OK == st) {
            st = loco_model_backward(m, err);
        }
        if (LOCO_OK == st) {
            st = loco_grad_clip_cuda(ctx, loco_model_device_grads(m), n, 1.0f, NULL, err);
        }
        if (LOCO_OK == st) {
            st = loco_optim_step_cuda(&opt, loco_model_device_params(m),
                                      loco_model_device_params_bf16(m),
                                      loco_model_device_grads(m), p.lr, err);
        }
    }
    if (LOCO_OK == st) {
        st = loco_cuda_sync(ctx, err);
    }
    if (LOCO_OK == st && a->profile > 0) {
        st = loco_cuda_gpt_profile_report(loco_model_cuda_gpt(m), stdout, err);
    } else if (LOCO_OK == st) {
        elapsed = loco_now_s() - t_start;
    }
    if (LOCO_OK == st) {
        out->tokens_per_s = (double)a->steps * (double)BT / elapsed;
        out->step_ms = 1e3 * elapsed / a->steps;
        out->forward_ms = 1e3 * t_fwd / a->steps;
        if (!isfinite(out->loss)) {
            st = loco_error_set(err, LOCO_ERR_NONFINITE, "training diverged: loss %g",
                                (double)out->loss);
        }
    }
    free(data);
    loco_optim_free(&opt);
    loco_model_free(m);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * PyTorch's side */

typedef struct torch_timing {
    double tokens_per_s;
    float loss;
    char version[32];
} torch_timing;

static loco_status run_torch(const gpu_args *a, const char *python, const char *script,
                             torch_timing *out, loco_error *err)
{
    char cmd[2 * PATH_MAX + 320];
    snprintf(cmd, sizeof cmd,
             "CUDA_VISIBLE_DEVICES=%d '%s' '%s' --layers %d --width %d --heads %d --kv-heads %d "
             "--share %d --vocab %d --seq %d --batch %d --steps %d --warmup %d --compile %d",
             a->device, python, script, a->cfg.n_layer, a->cfg.n_embd, a->cfg.n_head,
             a->cfg.n_kv_head, a->share, a->cfg.vocab, a->seq, a->batch, a->steps, a->warmup,
             a->compile);
    loco_json_doc doc;
    LOCO_TRY(loco_bench_run_json(cmd, &doc, err));
    const loco_json_node *root = loco_json_root(&doc);
    const loco_json_node *tps = loco_json_get(&doc, root, "tokens_per_s");
    const loco_json_node *ver = loco_json_get(&doc, root, "torch");
    const loco_json_node *loss = loco_json_get(&doc, root, "loss");
    loco_status st = LOCO_OK;
    if (NULL == tps || LOCO_JSON_NUMBER != tps->type) {
        st = loco_error_set(err, LOCO_ERR_FORMAT, "PyTorch baseline printed no tokens_per_s");
    } else {
        out->tokens_per_s = tps->number;
        out->loss = NULL != loss && LOCO_JSON_NUMBER == loss->type ? (float)loss->number : NAN;
        snprintf(out->version, sizeof out->version, "%s",
                 NULL != ver && LOCO_JSON_STRING == ver->type ? ver->str : "?");
    }
    loco_json_free(&doc);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * The flash attention kernels alone, every tile variant (cuda/layers_cuda.h), timed with CUDA
 * events: what the model's default tiles were chosen by. */

#if LOCO_HAVE_CUDA
static int bench_kernels(const gpu_args *a)
{
    const loco_model_config *c = &a->cfg;
    int B = a->batch, T = a->seq, NH = c->n_head, NKV = c->n_kv_head, hs = c->n_embd / c->n_head;
    int C = c->n_embd, KV = NKV * hs, S = C + 2 * KV;
    size_t N = (size_t)B * T;
    uint16_t *host = malloc(N * S * sizeof(uint16_t));
    void *qkv = NULL, *out = NULL, *dout = NULL, *dqkv = NULL, *lse = NULL, *scratch = NULL;
    cudaEvent_t e0, e1;
    bool ok =
        NULL != host && cudaSuccess == cudaMalloc(&qkv, N * S * 2) &&
        cudaSuccess == cudaMalloc(&dqkv, N * S * 2) && cudaSuccess == cudaMalloc(&out, N * C * 2) &&
        cudaSuccess == cudaMalloc(&dout, N * C * 2) &&
        cudaSuccess == cudaMalloc(&lse, (size_t)B * NH * T * 4) &&
        cudaSuccess == cudaMalloc(&scratch, loco_attention_scratch_floats_cuda(B, T, NH) * 4) &&
        cudaSuccess == cudaEventCreate(&e0) && cudaSuccess == cudaEventCreate(&e1);
    if (ok) { /* random bf16 in [-2, 2) for Q, K, V and dO */
        loco_rng rng;
        loco_rng_init(&rng, 3, 0);
        for (size_t i = 0; i < N * S; i++) {
            host[i] = loco_f32_to_bf16(4.0f * loco_rng_uniform(&rng) - 2.0f);
        }
        ok = cudaSuccess == cudaMemcpy(qkv, host, N * S * 2, cudaMemcpyHostToDevice) &&
             cudaSuccess == cudaMemcpy(dout, host, N * C * 2, cudaMemcpyHostToDevice);
    }
    double pairs = (double)T * (T + 1) / 2.0, fwd_flops = 4.0 * B * NH * pairs * hs;
    printf("flash attention at B %d, T %d, %d heads (%d K/V), head size %d; fwd = 2 products, "
           "bwd = 5 (TFLOP/s count those)\n%-22s %10s %10s %10s %10s\n",
           B, T, NH, NKV, hs, "tiles fwd_mt/dq_mt/dkv", "fwd ms", "fwd TF/s", "bwd ms",
           "bwd TF/s");
    for (int v = 0; ok && v < 8; v++) {
        loco_flash_tiles t = {1 + (v >> 2), 1 + ((v >> 1) & 1), 2 + (v & 1)};
        loco_bf16 *q = qkv, *dq = dqkv;
        float ms[2] = {0, 0};
        for (int phase = 0; ok && phase < 2; phase++) {
            for (int r = 0; ok && r < 13; r++) { /* 3 warm-up calls, then 10 timed */
                if (3 == r) {
                    ok = cudaSuccess == cudaEventRecord(e0, 0);
                }
                loco_status st =
                    0 == phase
                        ? loco_attention_forward_tiles_cuda(&t, out, lse, q, S, q + C, q + C + KV,
                                                            S, B, T, NH, NKV, hs, 0)
                        : loco_attention_backward_tiles_cuda(&t, scratch, dq, S, dq + C,
                                                             dq + C + KV, true, dout, out, lse, q,
                                                             S, q + C, q + C + KV, S, B, T, NH,
                                                             NKV, hs, 0);
                ok = ok && LOCO_OK == st;
            }
            ok = ok && cudaSuccess == cudaEventRecord(e1, 0) &&
                 cudaSuccess == cudaEventSynchronize(e1) &&
                 cudaSuccess == cudaEventElapsedTime(&ms[phase], e0, e1);
            ms[phase] /= 10.0f;
        }
        if (ok) {
            printf("%8d/%d/%d%13s %10.3f %10.1f %10.3f %10.1f\n", t.forward_mt, t.dq_mt,
                   t.dkv_blocks, "", ms[0], fwd_flops / ms[0] / 1e9, ms[1],
                   2.5 * fwd_flops / ms[1] / 1e9);
        }
    }
    if (!ok) {
        fprintf(stderr, "loco bench gpu --kernels: a CUDA call failed: %s\n",
                cudaGetErrorString(cudaGetLastError()));
    }
    cudaFree(qkv);
    cudaFree(dqkv);
    cudaFree(out);
    cudaFree(dout);
    cudaFree(lse);
    cudaFree(scratch);
    free(host);
    return ok ? 0 : 1;
}
#else
static int bench_kernels(const gpu_args *a)
{
    (void)a;
    fprintf(stderr, "loco bench gpu --kernels: loco was built without CUDA\n");
    return 1;
}
#endif

/* ---------------------------------------------------------------------------------------------
 * Driver */

int loco_bench_gpu(int argc, char **argv)
{
    gpu_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (0 != rc) {
        return rc < 0 ? 0 : rc;
    }
    if (0 == loco_cuda_device_count()) {
        fprintf(stderr, "loco bench gpu: no CUDA device (%s)\n",
                loco_cuda_built() ? "none visible to this process"
                                  : "loco was built without CUDA: cmake -DLOCO_CUDA=ON");
        return 1;
    }
    if (a.kernels) {
        return bench_kernels(&a);
    }
    const char *python = NULL;
    char script[PATH_MAX];
    if (0 != loco_bench_find_baseline("loco bench gpu", &a.common, "torch_gpu.py", &python, script,
                                      sizeof script)) {
        return 1;
    }
    printf("loco bench gpu: %d layers, width %d, %d heads (%d K/V), K/V groups of %d, vocab %d, "
           "batch %d x %d tokens, %d timed steps after %d warmup\n",
           a.cfg.n_layer, a.cfg.n_embd, a.cfg.n_head, a.cfg.n_kv_head, a.share, a.cfg.vocab,
           a.batch, a.seq, a.steps, a.warmup);
    fflush(stdout);
    loco_error err = {0};
    gpu_timing t = {0};
    if (LOCO_OK != run_loco(&a, &t, &err)) {
        fprintf(stderr, "loco bench gpu: %s\n", loco_error_msg(&err, err.status));
        return 1;
    }
    double peak = peak_flops(t.device);
    double fpt = flops_per_token(&a, t.n_params);
    printf("  loco:    %9.0f tokens/s  (%.1f ms/step, forward %.1f ms, loss %.3f, %zu params, "
           "%s)\n",
           t.tokens_per_s, t.step_ms, t.forward_ms, t.loss, t.n_params, t.device);
    fflush(stdout);
    torch_timing tt = {0};
    if (!a.common.no_torch) {
        if (LOCO_OK != run_torch(&a, python, script, &tt, &err)) {
            fprintf(stderr, "loco bench gpu: %s\n", loco_error_msg(&err, err.status));
            return 1;
        }
        printf("  pytorch: %9.0f tokens/s  (loss %.3f, torch %s%s)\n", tt.tokens_per_s, tt.loss,
               tt.version, a.compile ? ", compiled" : "");
    }
    loco_bench_records records = {0};
    loco_bench_record rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.bench, sizeof rec.bench, "gpu");
    snprintf(rec.case_name, sizeof rec.case_name, "L%d-C%d-H%d-KV%d-S%d-T%d-B%d",
             a.cfg.n_layer, a.cfg.n_embd, a.cfg.n_head, a.cfg.n_kv_head, a.share, a.seq, a.batch);
    rec.size = (double)a.batch * a.seq;
    rec.value = t.tokens_per_s;
    snprintf(rec.unit, sizeof rec.unit, "tokens/s");
    if (!a.common.no_torch) {
        snprintf(rec.baseline, sizeof rec.baseline, "pytorch");
        rec.baseline_value = tt.tokens_per_s;
        rec.ratio = t.tokens_per_s / tt.tokens_per_s;
    }
    loco_status st = loco_bench_records_add(&records, &rec);
    if (peak > 0.0 && LOCO_OK == st) {
        loco_bench_record mfu = rec;
        snprintf(mfu.case_name, sizeof mfu.case_name, "%.80s-mfu", rec.case_name);
        mfu.value = 100.0 * fpt * t.tokens_per_s / peak;
        snprintf(mfu.unit, sizeof mfu.unit, "%% MFU");
        mfu.baseline_value = 100.0 * fpt * tt.tokens_per_s / peak;
        st = loco_bench_records_add(&records, &mfu);
    }
    printf("\n%-36s %12s %12s %8s %9s %9s\n", "case", "loco tok/s", "torch tok/s", "ratio",
           "loco MFU", "torch MFU");
    printf("%-36s %12.0f %12.0f %8.3f %8.1f%% %8.1f%%\n", rec.case_name, rec.value,
           rec.baseline_value, rec.ratio, peak > 0 ? 100.0 * fpt * t.tokens_per_s / peak : 0.0,
           peak > 0 ? 100.0 * fpt * tt.tokens_per_s / peak : 0.0);
    printf("device: %s; MFU = (6 N + 6 L C T) flops/token x tokens/s / %.1f TFLOP/s (dense "
           "bf16 peak)\n",
           t.device, peak / 1e12);
    if (LOCO_OK == st && NULL != a.common.json) {
        st = loco_bench_records_write(&records, a.common.json, &err);
    }
    loco_bench_records_free(&records);
    if (LOCO_OK != st) {
        fprintf(stderr, "loco bench gpu: %s\n", loco_error_msg(&err, st));
        return 1;
    }
    return 0;
}
