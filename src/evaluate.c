/* src/evaluate.c — `loco eval` (score a checkpoint on prepared text) and `loco sample`
 * (generate text from a checkpoint with the KV cache). Both rebuild the model from the
 * configuration stored in the weights file, so a checkpoint is all they need. */
#include "src/checkpoint.h"
#include "src/commands.h"
#include "src/data.h"
#include "src/model.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* CHECKPOINT may be a weights file, a checkpoint directory (its model.safetensors) or a run
 * directory (the checkpoint named by checkpoints/latest). */
static loco_status resolve_weights(const char *arg, char *out, size_t cap, loco_error *err)
{
    struct stat st;
    if (0 != stat(arg, &st)) {
        return loco_error_errno(err, LOCO_ERR_NOT_FOUND, errno, "checkpoint %s", arg);
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "%s", arg);
        return LOCO_OK;
    }
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/model.safetensors", arg);
    if (0 == stat(probe, &st)) {
        snprintf(out, cap, "%s", probe);
        return LOCO_OK;
    }
    snprintf(probe, sizeof probe, "%s/checkpoints/latest", arg);
    char *name = NULL;
    size_t len = 0;
    if (LOCO_OK != loco_file_read_all(probe, 256, &name, &len, NULL)) {
        return loco_error_set(err, LOCO_ERR_NOT_FOUND,
                              "%s holds no model.safetensors and no checkpoints/latest: give a "
                              "weights file, a checkpoint directory or a run directory",
                              arg);
    }
    name[strcspn(name, "\n")] = '\0';
    snprintf(out, cap, "%s/checkpoints/%s/model.safetensors", arg, name);
    free(name);
    return LOCO_OK;
}

/* Build a model sized for (B, T) from the weights file and load its parameters. */
static loco_status load_model(const char *weights, int B, int T, loco_model **model,
                              loco_error *err)
{
    loco_model_config cfg;
    LOCO_TRY(loco_checkpoint_read_config(weights, &cfg, err));
    if (T > cfg.ctx) {
        return loco_error_set(err, LOCO_ERR_USAGE,
                              "sequence length %d exceeds the model's context %d (from %s)", T,
                              cfg.ctx, weights);
    }
    LOCO_TRY(loco_model_init(model, &cfg, B, T, err));
    return loco_checkpoint_load_weights(weights, &cfg, loco_model_tensors(*model),
                                        loco_model_params(*model), NULL, err);
}

/* ---------------------------------------------------------------------------------------------
 * loco eval */

static void eval_usage(FILE *out)
{
    fprintf(out,
            "usage: loco eval CHECKPOINT [--data DIR] [--split val|train] [--batches N]\n"
            "                 [--batch B] [--seq T] [--threads N]\n\n"
            "Mean next-token loss of a checkpoint on prepared text (loco data prepare), with\n"
            "perplexity and bits per token. CHECKPOINT: a weights file, a checkpoint directory\n"
            "or a run directory (its latest checkpoint).\n\n"
            "  --data DIR      prepared dataset (default data/default)\n"
            "  --split S       val (default) or train\n"
            "  --batches N     batches to score (default: the whole split, at most 1000)\n"
            "  --batch B       sequences per batch (default 8)\n"
            "  --seq T         tokens per sequence (default: the model's context)\n"
            "  --threads N     OpenMP threads (default: all cores)\n");
}

static int parse_positive(const char *text, const char *what, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if ('\0' == text[0] || '\0' != *end || ERANGE == errno || v < 1 || v > (1 << 30)) {
        fprintf(stderr, "loco: %s '%s' is not a positive integer\n", what, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int loco_cmd_eval(int argc, char **argv)
{
    const char *data = "data/default", *split = "val";
    int batches = 0, B = 8, T = 0, threads = 0;
    static const struct option options[] = {
        {"data", required_argument, NULL, 'd'},    {"split", required_argument, NULL, 's'},
        {"batches", required_argument, NULL, 'n'}, {"batch", required_argument, NULL, 'b'},
        {"seq", required_argument, NULL, 't'},     {"threads", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while (-1 != (opt = getopt_long(argc, argv, "d:s:n:b:t:j:h", options, NULL))) {
        switch (opt) {
        case 'd': data = optarg; break;
        case 's': split = optarg; break;
        case 'n': if (parse_positive(optarg, "--batches", &batches)) return 2; break;
        case 'b': if (parse_positive(optarg, "--batch", &B)) return 2; break;
        case 't': if (parse_positive(optarg, "--seq", &T)) return 2; break;
        case 'j': if (parse_positive(optarg, "--threads", &threads)) return 2; break;
        case 'h': eval_usage(stdout); return 0;
        default: eval_usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc || (0 != strcmp(split, "val") && 0 != strcmp(split, "train"))) {
        eval_usage(stderr);
        return 2;
    }
    if (threads > 0) {
        omp_set_num_threads(threads);
    }
    loco_error err = {0};
    char weights[4096];
    loco_status st = resolve_weights(argv[optind], weights, sizeof weights, &err);
    loco_model_config cfg;
    if (LOCO_OK == st) {
        st = loco_checkpoint_read_config(weights, &cfg, &err);
    }
    if (LOCO_OK == st && 0 == T) {
        T = cfg.ctx;
    }
    loco_model *model = NULL;
    if (LOCO_OK == st) {
        st = load_model(weights, B, T, &model, &err);
    }
    loco_token_file file = {0};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.tok", data, split);
    if (LOCO_OK == st) {
        st = loco_token_file_open(&file, path, &err);
    }
    if (LOCO_OK == st && file.vocab > (uint32_t)cfg.vocab) {
        st = loco_error_set(&err, LOCO_ERR_USAGE, "%s has vocabulary %u, the model only %d", path,
                            file.vocab, cfg.vocab);
    }
    loco_loader loader = {0};
    if (LOCO_OK == st) {
        st = loco_loader_init(&loader, &file, LOCO_PARTITION_IID, 1 << 30, 0, 1, B, T, &err);
    }
    uint16_t *inputs = NULL, *targets = NULL;
    double total = 0;
    int scored = 0;
    if (LOCO_OK == st) {
        int available = (int)((loader.length - 1) / ((uint64_t)B * T));
        if (0 == batches || batches > available) {
            batches = available > 0 ? available : 1;
        }
        if (batches > 1000) {
            batches = 1000;
        }
        inputs = malloc((size_t)B * T * sizeof *inputs);
        targets = malloc((size_t)B * T * sizeof *targets);
        if (NULL == inputs || NULL == targets) {
            st = loco_error_set(&err, LOCO_ERR_NOMEM, "out of memory");
        }
    }
    for (int b = 0; LOCO_OK == st && b < batches; b++) {
        loco_loader_seek_spread(&loader, b, batches); /* as training's validation does */
        loco_loader_next(&loader, inputs, targets);
        float loss = NAN;
        st = loco_model_forward(model, inputs, targets, B, T, &loss, &err);
        total += loss;
        scored++;
    }
    if (LOCO_OK == st) {
        double mean = total / scored;
        printf("%s on %s: loss %.4f nats/token, perplexity %.3f, %.4f bits/token (%d batches of "
               "%dx%d tokens)\n",
               weights, path, mean, exp(mean), mean / log(2.0), scored, B, T);
    } else {
        fprintf(stderr, "loco eval: %s\n", loco_error_msg(&err, st));
    }
    free(inputs);
    free(targets);
    loco_loader_free(&loader);
    loco_token_file_close(&file);
    loco_model_free(model);
    return loco_status_exit_code(st);
}

/* ---------------------------------------------------------------------------------------------
 * loco sample */

static void sample_usage(FILE *out)
{
    fprintf(out,
            "usage: loco sample CHECKPOINT [--prompt TEXT] [--tokens N] [--temperature T]\n"
            "                   [--top-k K] [--seed S]\n\n"
            "Generate text from a checkpoint (byte tokenizer) with the KV cache.\n\n"
            "  --prompt TEXT     text to continue (default: a newline)\n"
            "  --tokens N        tokens to generate (default 256)\n"
            "  --temperature T   softmax temperature, > 0 (default 0.8); 0 = greedy\n"
            "  --top-k K         sample among the K most likely tokens (default 0 = all)\n"
            "  --seed S          random seed (default 1)\n");
}

/* Draw the next token from logits (vocab) with temperature and top-k. */
static uint16_t draw_token(const float *logits, int vocab, float temperature, int top_k,
                           loco_rng *rng, float *probs)
{
    int best = 0;
    for (int i = 1; i < vocab; i++) {
        best = logits[i] > logits[best] ? i : best;
    }
    if (temperature <= 0) {
        return (uint16_t)best;
    }
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < vocab) {
        /* the k-th largest logit, by repeated selection (vocab is small for sampling) */
        memcpy(probs, logits, (size_t)vocab * sizeof *probs);
        for (int k = 0; k < top_k; k++) {
            int m = 0;
            for (int i = 1; i < vocab; i++) {
                m = probs[i] > probs[m] ? i : m;
            }
            threshold = probs[m];
            probs[m] = -INFINITY;
        }
    }
    double sum = 0;
    for (int i = 0; i < vocab; i++) {
        double p = logits[i] >= threshold ? exp((logits[i] - logits[best]) / temperature) : 0;
        probs[i] = (float)p;
        sum += p;
    }
    double u = loco_rng_uniform(rng) * sum, acc = 0;
    for (int i = 0; i < vocab; i++) {
        acc += probs[i];
        if (u < acc) {
            return (uint16_t)i;
        }
    }
    return (uint16_t)best;
}

int loco_cmd_sample(int argc, char **argv)
{
    const char *prompt = "\n";
    int tokens = 256, top_k = 0;
    double temperature = 0.8;
    unsigned long long seed = 1;
    static const struct option options[] = {
        {"prompt", required_argument, NULL, 'p'},      {"tokens", required_argument, NULL, 'n'},
        {"temperature", required_argument, NULL, 't'}, {"top-k", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 's'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int opt;
    optind = 1;
    while (-1 != (opt = getopt_long(argc, argv, "p:n:t:k:s:h", options, NULL))) {
        char *end = NULL;
        switch (opt) {
        case 'p': prompt = optarg; break;
        case 'n': if (parse_positive(optarg, "--tokens", &tokens)) return 2; break;
        case 'k': if (parse_positive(optarg, "--top-k", &top_k)) return 2; break;
        case 't':
            temperature = strtod(optarg, &end);
            if ('\0' != *end || !(temperature >= 0) || !isfinite(temperature)) {
                fprintf(stderr, "loco sample: --temperature '%s' must be a number >= 0\n", optarg);
                return 2;
            }
            break;
        case 's': seed = strtoull(optarg, &end, 10); break;
        case 'h': sample_usage(stdout); return 0;
        default: sample_usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        sample_usage(stderr);
        return 2;
    }
    loco_error err = {0};
    char weights[4096];
    loco_status st = resolve_weights(argv[optind], weights, sizeof weights, &err);
    loco_model *model = NULL;
    loco_model_config cfg;
    if (LOCO_OK == st) {
        st = loco_checkpoint_read_config(weights, &cfg, &err);
    }
    if (LOCO_OK == st && cfg.vocab < 256) {
        st = loco_error_set(&err, LOCO_ERR_USAGE,
                            "%s has vocabulary %d: sampling text needs the byte tokenizer (256)",
                            weights, cfg.vocab);
    }
    if (LOCO_OK == st) {
        st = load_model(weights, 1, 1, &model, &err);
    }
    loco_kv_cache *cache = NULL;
    if (LOCO_OK == st) {
        st = loco_kv_cache_init(&cache, model, cfg.ctx, &err);
    }
    float *logits = malloc((size_t)cfg.vocab * 2 * sizeof(float));
    uint16_t *history = malloc(((size_t)strlen(prompt) + (size_t)tokens + 1) * sizeof(uint16_t));
    if (LOCO_OK == st && (NULL == logits || NULL == history)) {
        st = loco_error_set(&err, LOCO_ERR_NOMEM, "out of memory");
    }
    loco_rng rng;
    loco_rng_init(&rng, seed, 0x73616d70ull /* "samp" */);
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)prompt; LOCO_OK == st && *p; p++) {
        history[n++] = *p;
    }
    /* Feed the prompt (its last ctx tokens), then generate; when the cache fills, restart it
     * on the most recent half context. */
    size_t fed_from = n > (size_t)cfg.ctx ? n - (size_t)cfg.ctx : 0;
    for (size_t i = fed_from; LOCO_OK == st && i < n; i++) {
        st = loco_model_decode_step(model, cache, history[i], logits, &err);
    }
    if (LOCO_OK == st) {
        fputs(prompt, stdout);
    }
    for (int g = 0; LOCO_OK == st && g < tokens; g++) {
        uint16_t next = draw_token(logits, cfg.vocab, (float)temperature, top_k, &rng,
                                   logits + cfg.vocab);
        history[n++] = next;
        putchar(next < 256 ? next : '?');
        if (loco_kv_cache_len(cache) >= cfg.ctx) {
            loco_kv_cache_reset(cache);
            size_t keep = (size_t)cfg.ctx / 2;
            for (size_t i = n - keep; LOCO_OK == st && i < n; i++) {
                st = loco_model_decode_step(model, cache, history[i], logits, &err);
            }
        } else {
            st = loco_model_decode_step(model, cache, next, logits, &err);
        }
    }
    putchar('\n');
    if (LOCO_OK != st) {
        fprintf(stderr, "loco sample: %s\n", loco_error_msg(&err, st));
    }
    free(logits);
    free(history);
    loco_kv_cache_free(cache);
    loco_model_free(model);
    return loco_status_exit_code(st);
}
