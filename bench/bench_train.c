/* bench/bench_train.c — `loco bench train`: CPU training throughput of loco's model against
 * PyTorch on the same shape, batch and thread count, measured in the same run.
 *
 * Both sides train on random tokens for --warmup + --steps steps of forward, backward, global-norm
 * clipping (1.0) and AdamW; only the --steps steps are timed. PyTorch runs bench/torch_train.py
 * (the same model in torch) in a child process with torch.set_num_threads(--threads); the report
 * names the BLAS library torch actually loaded. With --rounds R > 1 the two alternate R times and
 * the best round of each is kept, which evens out a shared machine's noise.
 */
#include "bench/bench.h"
#include "optim/optim.h"
#include "src/model.h"

#include <libgen.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct train_args {
    loco_model_config cfg;
    int share; /* consecutive layers per K/V group */
    int batch, seq, threads, steps, warmup, rounds;
    loco_bench_common common; /* --json, --python, --torch-script, --no-torch */
} train_args;

static void train_usage(FILE *out)
{
    fprintf(
        out,
        "usage: loco bench train [options]\n\n"
        "Training throughput (tokens/s: forward + backward + clip + AdamW) of loco's CPU model\n"
        "and of the same model in PyTorch (bench/torch_train.py), same shape, batch, threads.\n\n"
        "  --layers N      transformer blocks (4)\n"
        "  --width C       embedding width (128)\n"
        "  --heads H       query heads (4)\n"
        "  --kv-heads G    K/V heads (= heads)\n"
        "  --share S       layers per cross-layer K/V group (1)\n"
        "  --vocab V       vocabulary (256)\n"
        "  --seq T         sequence length (128)\n"
        "  --batch B       sequences per step (16)\n"
        "  --threads N     OpenMP / torch threads (2)\n"
        "  --steps N       timed steps (20)\n"
        "  --warmup N      untimed steps first (3)\n"
        "  --rounds R      alternate loco and torch R times, keep each one's best (1)\n"
        "  --python PATH   interpreter with torch (default: $LOCO_PYTHON, python3,\n"
        "                  /usr/bin/python3 - the first that imports torch)\n"
        "  --torch-script PATH   bench/torch_train.py (default: found next to the binary)\n"
        "  --no-torch      measure loco only\n"
        "  --json FILE     write the records\n");
}

static int parse_args(int argc, char **argv, train_args *a)
{
    loco_model_config_default(&a->cfg);
    a->cfg.n_kv_head = 0;
    a->share = 1;
    a->batch = 16;
    a->seq = 128;
    a->threads = 2;
    a->steps = 20;
    a->warmup = 3;
    a->rounds = 1;
    const loco_bench_int_flag ints[] = {{"--layers", &a->cfg.n_layer, 1, LOCO_MAX_LAYERS},
                                        {"--width", &a->cfg.n_embd, 1, 1 << 16},
                                        {"--heads", &a->cfg.n_head, 1, 1 << 12},
                                        {"--kv-heads", &a->cfg.n_kv_head, 1, 1 << 12},
                                        {"--share", &a->share, 1, LOCO_MAX_LAYERS},
                                        {"--vocab", &a->cfg.vocab, 1, 65536},
                                        {"--seq", &a->seq, 1, 1 << 16},
                                        {"--batch", &a->batch, 1, 1 << 16},
                                        {"--threads", &a->threads, 1, 1024},
                                        {"--steps", &a->steps, 1, 1 << 20},
                                        {"--warmup", &a->warmup, 0, 1 << 20},
                                        {"--rounds", &a->rounds, 1, 100}};
    int rc = loco_bench_parse_args("loco bench train", argc, argv, ints,
                                   sizeof ints / sizeof ints[0], &a->common, train_usage);
    return 0 != rc ? rc : loco_bench_model_config("loco bench train", &a->cfg, a->seq, a->share);
}

/* ---------------------------------------------------------------------------------------------
 * loco's side */

typedef struct loco_timing {
    double tokens_per_s, forward_ms, backward_ms, optim_ms;
    float loss;
    loco_model_profile profile; /* timed steps only */
} loco_timing;

static loco_status run_loco(const train_args *a, loco_timing *out, loco_error *err)
{
    omp_set_num_threads(a->threads);
    loco_model *m = NULL;
    LOCO_TRY(loco_model_init(&m, &a->cfg, a->batch, a->seq, err));
    loco_model_init_weights(m, 0);
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.lr = 1e-3f;
    p.schedule = LOCO_LR_CONSTANT;
    p.warmup_steps = 0;
    loco_optim opt;
    size_t n = loco_model_num_params(m), BT = (size_t)a->batch * a->seq;
    loco_status st = loco_optim_init(&opt, &p, n, err);
    uint16_t *data = malloc((BT + 1) * sizeof(uint16_t));
    if (LOCO_OK == st && NULL == data) {
        st = loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for the batch");
    }
    loco_rng rng;
    loco_rng_init(&rng, 1, 0);
    double t_fwd = 0, t_bwd = 0, t_opt = 0;
    for (int s = 0; LOCO_OK == st && s < a->warmup + a->steps; s++) {
        for (size_t i = 0; i <= BT; i++) {
            data[i] = (uint16_t)loco_rng_below(&rng, (uint32_t)a->cfg.vocab);
        }
        double t0 = loco_now_s();
        loco_model_zero_grad(m);
        st = loco_model_forward(m, data, data + 1, a->batch, a->seq, &out->loss, err);
        double t1 = loco_now_s();
        if (LOCO_OK == st) {
            st = loco_model_backward(m, err);
        }
        double t2 = loco_now_s();
        if (LOCO_OK == st) {
            st = loco_grad_clip(loco_model_grads(m), n, 1.0f, NULL, err);
        }
        if (LOCO_OK == st) {
            st = loco_optim_step(&opt, loco_model_params(m), loco_model_grads(m), p.lr,
                                 loco_model_tensors(m), err);
        }
        double t3 = loco_now_s();
        if (s + 1 == a->warmup) {
            loco_model_reset_profile(m);
        }
        if (s >= a->warmup) {
            t_fwd += t1 - t0;
            t_bwd += t2 - t1;
            t_opt += t3 - t2;
        }
    }
    if (LOCO_OK == st) {
        out->tokens_per_s = (double)a->steps * (double)BT / (t_fwd + t_bwd + t_opt);
        out->forward_ms = 1e3 * t_fwd / a->steps;
        out->backward_ms = 1e3 * t_bwd / a->steps;
        out->optim_ms = 1e3 * t_opt / a->steps;
        out->profile = loco_model_get_profile(m);
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
    char version[32];
    char blas[256];
} torch_timing;

static loco_status run_torch(const train_args *a, const char *python, const char *script,
                             torch_timing *out, loco_error *err)
{
    char cmd[2 * PATH_MAX + 256];
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' --layers %d --width %d --heads %d --kv-heads %d --vocab %d --seq %d "
             "--batch %d --threads %d --steps %d --warmup %d",
             python, script, a->cfg.n_layer, a->cfg.n_embd, a->cfg.n_head, a->cfg.n_kv_head,
             a->cfg.vocab, a->seq, a->batch, a->threads, a->steps, a->warmup);
    loco_json_doc doc;
    LOCO_TRY(loco_bench_run_json(cmd, &doc, err));
    const loco_json_node *root = loco_json_root(&doc);
    const loco_json_node *tps = loco_json_get(&doc, root, "tokens_per_s");
    const loco_json_node *ver = loco_json_get(&doc, root, "torch");
    const loco_json_node *blas = loco_json_get(&doc, root, "blas");
    loco_status st = LOCO_OK;
    if (NULL == tps || LOCO_JSON_NUMBER != tps->type) {
        st = loco_error_set(err, LOCO_ERR_FORMAT, "PyTorch baseline printed no tokens_per_s");
    } else {
        out->tokens_per_s = tps->number;
        snprintf(out->version, sizeof out->version, "%s",
                 NULL != ver && LOCO_JSON_STRING == ver->type ? ver->str : "?");
        snprintf(out->blas, sizeof out->blas, "%s",
                 NULL != blas && LOCO_JSON_STRING == blas->type ? blas->str : "?");
    }
    loco_json_free(&doc);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Driver */

int loco_bench_train(int argc, char **argv)
{
    train_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (0 != rc) {
        return rc < 0 ? 0 : rc;
    }
    const char *python = NULL;
    char script[PATH_MAX];
    if (0 != loco_bench_find_baseline("loco bench train", &a.common, "torch_train.py", &python,
                                      script, sizeof script)) {
        return 1;
    }
    printf("loco bench train: %d layers, width %d, %d heads (%d K/V), K/V groups of %d, vocab %d, "
           "batch %d x %d tokens, %d threads, %d timed steps\n",
           a.cfg.n_layer, a.cfg.n_embd, a.cfg.n_head, a.cfg.n_kv_head, a.share, a.cfg.vocab,
           a.batch, a.seq, a.threads, a.steps);
    loco_timing best = {0};
    torch_timing best_torch = {0};
    loco_error err = {0};
    for (int r = 0; r < a.rounds; r++) {
        loco_timing t = {0};
        if (LOCO_OK != run_loco(&a, &t, &err)) {
            fprintf(stderr, "loco bench train: %s\n", loco_error_msg(&err, err.status));
            return 1;
        }
        printf("  round %d loco:    %9.0f tokens/s  (forward %.1f ms, backward %.1f ms, clip+AdamW "
               "%.1f ms per step, loss %.3f)\n",
               r + 1, t.tokens_per_s, t.forward_ms, t.backward_ms, t.optim_ms, t.loss);
        printf("           ms per step by layer kind (forward / backward):");
        for (int op = 0; op < LOCO_OP_COUNT; op++) {
            printf(" %s %.1f/%.1f", loco_model_op_name((loco_model_op)op),
                   1e3 * t.profile.forward_s[op] / a.steps, 1e3 * t.profile.backward_s[op] / a.steps);
        }
        printf("\n");
        best = t.tokens_per_s > best.tokens_per_s ? t : best;
        if (a.common.no_torch) {
            continue;
        }
        torch_timing tt = {0};
        if (LOCO_OK != run_torch(&a, python, script, &tt, &err)) {
            fprintf(stderr, "loco bench train: %s\n", loco_error_msg(&err, err.status));
            return 1;
        }
        printf("  round %d pytorch: %9.0f tokens/s\n", r + 1, tt.tokens_per_s);
        best_torch = tt.tokens_per_s > best_torch.tokens_per_s ? tt : best_torch;
    }
    loco_bench_record rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.bench, sizeof rec.bench, "train");
    snprintf(rec.case_name, sizeof rec.case_name, "L%d-C%d-H%d-KV%d-S%d-T%d-B%d-threads%d",
             a.cfg.n_layer, a.cfg.n_embd, a.cfg.n_head, a.cfg.n_kv_head, a.share, a.seq, a.batch,
             a.threads);
    rec.size = (double)a.batch * a.seq;
    rec.value = best.tokens_per_s;
    snprintf(rec.unit, sizeof rec.unit, "tokens/s");
    if (!a.common.no_torch) {
        snprintf(rec.baseline, sizeof rec.baseline, "pytorch");
        rec.baseline_value = best_torch.tokens_per_s;
        rec.ratio = best.tokens_per_s / best_torch.tokens_per_s;
    }
    printf("\n%-44s %12s %12s %8s\n", "case", "loco tok/s", "torch tok/s", "ratio");
    printf("%-44s %12.0f %12.0f %8.2f\n", rec.case_name, rec.value, rec.baseline_value, rec.ratio);
    if (!a.common.no_torch) {
        printf("baseline: PyTorch %s via %s, BLAS %s\n", best_torch.version, python,
               best_torch.blas);
    }
    if (NULL != a.common.json) {
        loco_bench_records records = {0};
        loco_status st = loco_bench_records_add(&records, &rec);
        if (LOCO_OK == st) {
            st = loco_bench_records_write(&records, a.common.json, &err);
        }
        loco_bench_records_free(&records);
        if (LOCO_OK != st) {
            fprintf(stderr, "loco bench train: %s\n", loco_error_msg(&err, st));
            return 1;
        }
    }
    return 0;
}
