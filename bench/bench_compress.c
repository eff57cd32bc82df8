/* bench/bench_compress.c — `loco bench compress`: encode and decode throughput of every codec
 * (GB/s of fp32 input) next to a plain memcpy measured in the same run, bytes per element at
 * default settings, and exact top-k selection (radix select) next to std::nth_element.
 *
 *   loco bench compress [--sizes 16M,64M] [--threads N] [--codecs a,b,...] [--reps R]
 *                       [--clock wall|cpu] [--rounding stochastic|nearest] [--rng philox|ars]
 *                       [--json FILE]
 *
 * --threads defaults to 1, so the ratios are per core; each codec's ratios are against a memcpy
 * timed right before that codec (last column). Each timing is the best of up to R
 * repetitions (default 5; one repetition when a single run takes over five seconds). Every
 * buffer is written once before timing, so page faults are not measured. Data are
 * N(0, 1) floats from Philox. --clock cpu times with the calling thread's CPU clock (only with
 * --threads 1): on a shared machine it leaves out the time the process waited for a core. Matrices (PowerSGD, DCT top-k) are shaped rows x cols with
 * rows = 2^floor(log2(sqrt(n))). --rounding nearest runs the quantizers (max-min, QSGD, FP4,
 * ternary) with deterministic rounding instead of their stochastic default, which shows what
 * the per-element Philox draws cost; --rng ars draws from ARS-7 on the AES unit instead
 * (codec.rng = ars).
 */
#include "bench.h"
#include "compress/codec.h"
#include "compress/topk.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void loco_bench_nth_element_topk(const float *x, size_t n, size_t k, uint32_t *idx, float *val);

typedef struct compress_opts {
    size_t sizes[8];
    int nsizes;
    int threads, reps;
    bool cpu_clock;
    bool nearest; /* --rounding nearest */
    bool ars;     /* --rng ars */
    bool want[LOCO_CODEC_COUNT];
    const char *json;
} compress_opts;

static void compress_usage(FILE *out)
{
    fprintf(out,
            "usage: loco bench compress [--sizes 16M,64M] [--threads N] [--codecs a,b,...]\n"
            "                           [--reps R] [--clock wall|cpu]\n"
            "                           [--rounding stochastic|nearest] [--rng philox|ars]\n"
            "                           [--json FILE]\n\n"
            "Encode/decode GB/s of fp32 input per codec next to memcpy (same run), bytes per\n"
            "element, and exact top-k next to std::nth_element. --threads defaults to 1 (per\n"
            "core). Codecs: none fp16 bf16 maxmin qsgd fp4 ternary sign topk dgc randk dct_topk\n"
            "powersgd (default: all). --rounding nearest: the quantizers round to nearest\n"
            "instead of stochastically (no random draws). --rng ars: their draws come from\n"
            "ARS-7 on the AES unit instead of Philox (codec.rng = ars).\n");
}

static bool parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || !(v > 0)) {
        return false;
    }
    if ('K' == *end || 'k' == *end) {
        v *= 1024, end++;
    } else if ('M' == *end || 'm' == *end) {
        v *= 1048576, end++;
    } else if ('G' == *end || 'g' == *end) {
        v *= 1073741824.0, end++;
    }
    *out = (size_t)v;
    return '\0' == *end && *out >= 1 && *out <= LOCO_CODEC_MAX_N;
}

static int parse_compress_args(int argc, char **argv, compress_opts *o)
{
    memset(o, 0, sizeof *o);
    o->sizes[0] = (size_t)1 << 24;
    o->sizes[1] = (size_t)1 << 26;
    o->nsizes = 2;
    o->threads = 1;
    o->reps = 5;
    for (int c = 0; c < LOCO_CODEC_COUNT; c++) {
        o->want[c] = true;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (0 == strcmp(a, "--help") || 0 == strcmp(a, "-h")) {
            compress_usage(stdout);
            return 0;
        }
        if (NULL == v) {
            fprintf(stderr, "loco bench compress: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (0 == strcmp(a, "--sizes")) {
            o->nsizes = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); NULL != tok && o->nsizes < 8; tok = strtok(NULL, ",")) {
                if (!parse_size(tok, &o->sizes[o->nsizes++])) {
                    fprintf(stderr, "loco bench compress: bad size '%s' (e.g. 16M, 65536)\n", tok);
                    return 2;
                }
            }
        } else if (0 == strcmp(a, "--threads")) {
            o->threads = atoi(v);
            if (o->threads < 1) {
                fprintf(stderr, "loco bench compress: --threads must be >= 1\n");
                return 2;
            }
        } else if (0 == strcmp(a, "--reps")) {
            o->reps = atoi(v) < 1 ? 1 : atoi(v);
        } else if (0 == strcmp(a, "--clock")) {
            if (0 != strcmp(v, "wall") && 0 != strcmp(v, "cpu")) {
                fprintf(stderr, "loco bench compress: --clock is wall or cpu\n");
                return 2;
            }
            o->cpu_clock = 0 == strcmp(v, "cpu");
        } else if (0 == strcmp(a, "--rounding")) {
            if (0 != strcmp(v, "stochastic") && 0 != strcmp(v, "nearest")) {
                fprintf(stderr, "loco bench compress: --rounding is stochastic or nearest\n");
                return 2;
            }
            o->nearest = 0 == strcmp(v, "nearest");
        } else if (0 == strcmp(a, "--rng")) {
            if (0 != strcmp(v, "philox") && 0 != strcmp(v, "ars")) {
                fprintf(stderr, "loco bench compress: --rng is philox or ars\n");
                return 2;
            }
            o->ars = 0 == strcmp(v, "ars");
        } else if (0 == strcmp(a, "--json")) {
            o->json = v;
        } else if (0 == strcmp(a, "--codecs")) {
            memset(o->want, 0, sizeof o->want);
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); NULL != tok; tok = strtok(NULL, ",")) {
                loco_codec_id id;
                loco_error err = {0};
                if (LOCO_OK != loco_codec_id_parse(tok, &id, &err)) {
                    fprintf(stderr, "loco bench compress: %s\n", err.msg);
                    return 2;
                }
                o->want[id] = true;
            }
        } else {
            fprintf(stderr, "loco bench compress: unknown option %s\n", a);
            compress_usage(stderr);
            return 2;
        }
    }
    if (o->cpu_clock && 1 != o->threads) {
        fprintf(stderr, "loco bench compress: --clock cpu needs --threads 1\n");
        return 2;
    }
    return -1; /* run */
}

/* ---- timing -------------------------------------------------------------------------------- */

typedef enum bench_op { OP_MEMCPY, OP_ENCODE, OP_DECODE, OP_TOPK, OP_NTH } bench_op;

typedef struct bench_ctx {
    const float *x;
    float *dec;
    void *dst;
    size_t n, rows, cols, k;
    const loco_codec *codec;
    loco_codec_state *state;
    uint8_t *msg;
    size_t cap, len;
    uint32_t *idx;
    float *val;
    uint32_t *cand;
    size_t cand_cap;
    loco_status status;
} bench_ctx;

static void run_op(bench_ctx *b, bench_op op, uint64_t step)
{
    loco_codec_ctx ctx = {1, 0, 0, 0}; /* one step: random-k decodes need the encoder's nonce */
    (void)step;
    switch (op) {
    case OP_MEMCPY: memcpy(b->dst, b->x, b->n * sizeof(float)); break;
    case OP_ENCODE:
        b->status = loco_codec_encode(b->codec, b->state, b->x, b->n, &ctx, b->msg, b->cap, &b->len);
        break;
    case OP_DECODE:
        b->status = loco_codec_decode_add(b->codec, b->msg, b->len, b->dec, b->n, 1.0f, &ctx);
        break;
    case OP_TOPK:
        b->status = loco_topk_select(b->x, b->n, b->k, b->idx, b->val, b->cand, b->cand_cap, NULL);
        break;
    case OP_NTH: loco_bench_nth_element_topk(b->x, b->n, b->k, b->idx, b->val); break;
    }
}

/* Seconds on the chosen clock. */
static double bench_clock(bool cpu)
{
    if (!cpu) {
        return loco_now_s();
    }
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best-of-reps seconds of one operation (fewer reps when one run takes over five seconds). */
static double time_op(bench_ctx *b, bench_op op, int reps, bool cpu)
{
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_clock(cpu);
        run_op(b, op, (uint64_t)r);
        double t = bench_clock(cpu) - t0;
        best = t < best ? t : best;
        if (LOCO_OK != b->status || t > 5.0) {
            break;
        }
    }
    return best;
}

static void add_record(loco_bench_records *rec, const char *case_name, double size, double value,
                       const char *unit, const char *baseline, double baseline_value)
{
    loco_bench_record r;
    memset(&r, 0, sizeof r);
    snprintf(r.bench, sizeof r.bench, "compress");
    snprintf(r.case_name, sizeof r.case_name, "%s", case_name);
    r.size = size;
    r.value = value;
    snprintf(r.unit, sizeof r.unit, "%s", unit);
    snprintf(r.baseline, sizeof r.baseline, "%s", baseline);
    r.baseline_value = baseline_value;
    r.ratio = baseline_value > 0 ? value / baseline_value : 0;
    loco_bench_records_add(rec, &r);
}

/* ---- one problem size ------------------------------------------------------------------------- */

static int bench_size(const compress_opts *o, size_t n, loco_bench_records *rec)
{
    size_t rows = 1;
    while (rows * rows * 4 <= n) {
        rows *= 2;
    }
    while (0 != n % rows) {
        rows /= 2;
    }
    size_t cols = n / rows;
    float *x = loco_alloc_aligned(n * sizeof(float));
    float *dec = loco_alloc_aligned(n * sizeof(float));
    void *dst = loco_alloc_aligned(n * sizeof(float));
    size_t kmax = n / 10 + 1;
    uint32_t *idx = malloc(kmax * sizeof *idx), *idx2 = malloc(kmax * sizeof *idx2);
    float *val = malloc(kmax * sizeof *val), *val2 = malloc(kmax * sizeof *val2);
    size_t cand_cap = loco_topk_scratch_words(kmax, n);
    uint32_t *cand = malloc(cand_cap * sizeof *cand);
    if (NULL == x || NULL == dec || NULL == dst || NULL == idx || NULL == idx2 || NULL == val ||
        NULL == val2 || NULL == cand) {
        fprintf(stderr, "loco bench compress: out of memory for n = %zu\n", n);
        return 1;
    }
    loco_rng r;
    loco_rng_init(&r, 2024, n);
    for (size_t i = 0; i < n; i++) {
        x[i] = loco_rng_normal(&r);
    }
    char label[32];
    snprintf(label, sizeof label, "%zuM", n >> 20);
    if (n < ((size_t)1 << 20)) {
        snprintf(label, sizeof label, "%zu", n);
    }
    bench_ctx b = {x, dec, dst, n, rows, cols, 0, NULL, NULL, NULL, 0, 0, idx, val, cand,
                   cand_cap, LOCO_OK};
    memset(dst, 1, n * sizeof(float)); /* fault the pages in before timing */
    memset(dec, 0, n * sizeof(float));
    memset(idx, 0, kmax * sizeof *idx);
    memset(idx2, 0, kmax * sizeof *idx2);
    memset(val, 0, kmax * sizeof *val);
    memset(val2, 0, kmax * sizeof *val2);
    memset(cand, 0, cand_cap * sizeof *cand);
    double t_copy = time_op(&b, OP_MEMCPY, o->reps + 2, o->cpu_clock);
    double copy_gbs = 4.0 * n / t_copy / 1e9;
    printf("\n== n = %zu (%s x %d thread%s, %s clock%s): memcpy %.2f GB/s\n", n, label,
           o->threads, o->threads > 1 ? "s" : "", o->cpu_clock ? "cpu" : "wall",
           o->nearest ? ", quantizers round to nearest" : (o->ars ? ", ARS draws" : ""),
           copy_gbs);
    printf("%-10s %12s %8s %12s %8s %10s %10s\n", "codec", "encode GB/s", "of copy",
           "decode GB/s", "of copy", "bytes/elem", "copy GB/s");
    char name[96];
    snprintf(name, sizeof name, "memcpy %s", label);
    add_record(rec, name, (double)n, copy_gbs, "GB/s", "memcpy", copy_gbs);
    int rc = 0;
    for (int id = 0; id < LOCO_CODEC_COUNT; id++) {
        if (!o->want[id]) {
            continue;
        }
        loco_codec_params p = loco_codec_params_default((loco_codec_id)id);
        if (o->nearest) {
            p.stochastic = false;
        }
        p.rng = o->ars ? LOCO_CODEC_RNG_ARS : LOCO_CODEC_RNG_PHILOX;
        loco_codec *codec = NULL;
        loco_codec_state *state = NULL;
        loco_error err = {0};
        if (LOCO_OK != loco_codec_init(&codec, &p, &err) ||
            LOCO_OK != loco_codec_state_init(&state, codec, rows, cols, &err)) {
            fprintf(stderr, "loco bench compress: %s: %s\n", loco_codec_name(p.id), err.msg);
            loco_codec_free(codec);
            rc = 1;
            continue;
        }
        b.codec = codec;
        b.state = state;
        b.cap = loco_codec_bound_shape(codec, rows, cols);
        b.msg = malloc(b.cap);
        if (NULL != b.msg) {
            memset(b.msg, 0, b.cap);
        }
        /* the copy again right before this codec: on a shared machine the speed drifts, and
         * each row's ratios are against the copy measured next to it */
        double row_copy = 4.0 * n / time_op(&b, OP_MEMCPY, o->reps + 2, o->cpu_clock) / 1e9;
        double te = time_op(&b, OP_ENCODE, o->reps, o->cpu_clock);
        double td = LOCO_OK == b.status ? time_op(&b, OP_DECODE, o->reps, o->cpu_clock) : 0;
        if (NULL == b.msg || LOCO_OK != b.status) {
            fprintf(stderr, "loco bench compress: %s failed: %s\n", loco_codec_name(p.id),
                    loco_status_str(b.status));
            rc = 1;
        } else {
            double enc = 4.0 * n / te / 1e9, dcd = 4.0 * n / td / 1e9;
            double bpe = (double)b.len / (double)n;
            printf("%-10s %12.2f %7.0f%% %12.2f %7.0f%% %10.4f %10.2f\n", loco_codec_name(p.id),
                   enc, 100 * enc / row_copy, dcd, 100 * dcd / row_copy, bpe, row_copy);
            bool rounds = LOCO_CODEC_MAXMIN == p.id || LOCO_CODEC_QSGD == p.id ||
                          LOCO_CODEC_FP4 == p.id || LOCO_CODEC_TERNARY == p.id;
            const char *how = !rounds ? "" : (o->nearest ? " nearest" : (o->ars ? " ars" : ""));
            snprintf(name, sizeof name, "%s%s encode %s", loco_codec_name(p.id), how, label);
            add_record(rec, name, (double)n, enc, "GB/s", "memcpy", row_copy);
            snprintf(name, sizeof name, "%s%s decode %s", loco_codec_name(p.id), how, label);
            add_record(rec, name, (double)n, dcd, "GB/s", "memcpy", row_copy);
            snprintf(name, sizeof name, "%s bytes/elem %s", loco_codec_name(p.id), label);
            add_record(rec, name, (double)n, bpe, "B/elem", "fp32", 4.0);
        }
        free(b.msg);
        b.msg = NULL;
        loco_codec_state_free(state);
        loco_codec_free(codec);
    }
    /* exact top-k: radix select vs std::nth_element, both writing (index, value) in order */
    const double dens[] = {0.001, 0.01};
    for (int d = 0; d < 2; d++) {
        b.k = (size_t)(dens[d] * (double)n);
        b.k = b.k ? b.k : 1;
        double tr = time_op(&b, OP_TOPK, o->reps, o->cpu_clock);
        memcpy(idx2, idx, b.k * sizeof *idx);
        double tn = time_op(&b, OP_NTH, o->reps, o->cpu_clock);
        bool same = 0 == memcmp(idx2, idx, b.k * sizeof *idx);
        double ns_r = tr * 1e9 / n * o->threads, ns_n = tn * 1e9 / n;
        printf("top-k %5.1f%%: radix select %.2f ns/elem/core, std::nth_element %.2f ns/elem "
               "(%.1fx)%s\n",
               100 * dens[d], ns_r, ns_n, ns_n / ns_r, same ? "" : "  RESULTS DIFFER");
        rc |= same ? 0 : 1;
        snprintf(name, sizeof name, "topk select %g%% %s (ns/elem/core, lower is better)",
                 100 * dens[d], label);
        add_record(rec, name, (double)n, ns_r, "ns/elem", "nth_element", ns_n);
    }
    free(x);
    free(dec);
    free(dst);
    free(idx);
    free(idx2);
    free(val);
    free(val2);
    free(cand);
    return rc;
}

int loco_bench_compress(int argc, char **argv)
{
    compress_opts o;
    int rc = parse_compress_args(argc, argv, &o);
    if (rc >= 0) {
        return rc;
    }
    omp_set_num_threads(o.threads);
    loco_bench_records rec = {0};
    rc = 0;
    for (int s = 0; s < o.nsizes; s++) {
        rc |= bench_size(&o, o.sizes[s], &rec);
    }
    if (NULL != o.json) {
        loco_error err = {0};
        if (LOCO_OK != loco_bench_records_write(&rec, o.json, &err)) {
            fprintf(stderr, "loco bench compress: %s\n", err.msg);
            rc = 1;
        }
    }
    printf("\n(machine may be shared: compare ratios, not absolute numbers)\n");
    loco_bench_records_free(&rec);
    return rc;
}
