/* compress/lgreco.c — L-GreCo's measurements and its exact Pareto-front DP (lgreco.h). */
#include "lgreco.h"
#include "codec_impl.h"

#include <stdlib.h>

loco_status loco_lgreco_vary(const loco_codec_params *base, double value,
                             loco_codec_params *out, loco_error *err)
{
    *out = *base;
    switch (base->id) {
    case LOCO_CODEC_MAXMIN:
    case LOCO_CODEC_QSGD: out->bits = (int)value; break;
    case LOCO_CODEC_TOPK:
    case LOCO_CODEC_DGC:
    case LOCO_CODEC_RANDK: out->density = (float)value; break;
    case LOCO_CODEC_POWERSGD: out->rank = (int)value; break;
    case LOCO_CODEC_DCT_TOPK: out->chunk_topk = (int)value; break;
    default:
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "lgreco: codec %s has no knob to vary (use maxmin, qsgd, topk, "
                              "dgc, randk, powersgd or dct_topk)",
                              loco_codec_name(base->id));
    }
    return loco_codec_params_validate(out, err);
}

loco_status loco_lgreco_measure(const loco_codec_params *cands, int C, const float *x,
                                size_t rows, size_t cols, const loco_codec_ctx *ctx,
                                loco_lgreco_option *opts, loco_error *err)
{
    size_t n = rows * cols;
    float *dec = loco_alloc_aligned((n ? n : 1) * sizeof(float));
    if (NULL == dec) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "lgreco: cannot allocate %zu floats", n);
    }
    loco_status st = LOCO_OK;
    for (int c = 0; c < C && LOCO_OK == st; c++) {
        loco_codec *codec = NULL;
        loco_codec_state *state = NULL;
        uint8_t *msg = NULL;
        size_t len = 0;
        st = loco_codec_init(&codec, &cands[c], err);
        if (LOCO_OK == st) {
            st = loco_codec_state_init(&state, codec, rows, cols, err);
        }
        if (LOCO_OK == st) {
            size_t cap = loco_codec_bound_shape(codec, rows, cols);
            msg = malloc(cap);
            st = NULL == msg ? loco_error_set(err, LOCO_ERR_NOMEM, "lgreco: out of memory")
                             : loco_codec_encode_ex(codec, state, x, n, ctx, msg, cap, &len, err);
        }
        if (LOCO_OK == st) {
            memset(dec, 0, n * sizeof(float));
            st = loco_codec_decode_add_ex(codec, msg, len, dec, n, 1.0f, ctx, err);
        }
        if (LOCO_OK == st) {
            double e = 0.0;
            for (size_t i = 0; i < n; i++) {
                double d = (double)x[i] - dec[i];
                e += d * d;
            }
            opts[c].error = e;
            opts[c].bytes = len;
        }
        free(msg);
        loco_codec_state_free(state);
        loco_codec_free(codec);
    }
    free(dec);
    return st;
}

/* ---- the solver ------------------------------------------------------------------------------ */

/* A partial assignment of tensors 0..l: its sums and how it was reached. */
typedef struct front_entry {
    size_t bytes;
    double error;
    int32_t parent; /* entry in the previous front */
    int32_t choice; /* candidate for tensor l */
} front_entry;

static int by_bytes_then_error(const void *a, const void *b)
{
    const front_entry *x = a, *y = b;
    if (x->bytes != y->bytes) {
        return x->bytes < y->bytes ? -1 : 1;
    }
    if (x->error != y->error) {
        return x->error < y->error ? -1 : 1;
    }
    return x->parent != y->parent ? (x->parent < y->parent ? -1 : 1)
                                  : (x->choice < y->choice ? -1 : (x->choice > y->choice));
}

/* Keep the Pareto front of entries sorted by bytes: each kept entry has a smaller error than
 * every entry before it. Returns the new count. */
static size_t prune_dominated(front_entry *f, size_t m)
{
    qsort(f, m, sizeof *f, by_bytes_then_error);
    size_t kept = 0;
    for (size_t i = 0; i < m; i++) {
        if (0 == kept || f[i].error < f[kept - 1].error) {
            f[kept++] = f[i];
        }
    }
    return kept;
}

/* Too many entries: keep the smallest-bytes entry of each of `bins` error bins (the front is
 * sorted by bytes, so the first entry met in a bin is its smallest). */
static size_t thin_front(front_entry *f, size_t m, double budget, size_t bins)
{
    char *seen = calloc(bins, 1);
    if (NULL == seen) {
        return m < bins ? m : bins; /* keep the cheapest ones */
    }
    size_t kept = 0;
    for (size_t i = 0; i < m; i++) {
        double at = budget > 0 ? f[i].error / budget * (double)(bins - 1) : 0.0;
        size_t bin = at < 0 ? 0 : (at > (double)(bins - 1) ? bins - 1 : (size_t)at);
        if (!seen[bin]) {
            seen[bin] = 1;
            f[kept++] = f[i];
        }
    }
    free(seen);
    return kept;
}

loco_status loco_lgreco_solve(const loco_lgreco_option *opts, int L, int C, double budget,
                              int *choice, size_t *total_bytes, double *total_error,
                              loco_error *err)
{
    if (L < 1 || C < 1 || !(budget >= 0.0)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "lgreco: %d tensors, %d candidates, budget %g", L, C, budget);
    }
    /* fronts[l] holds up to LOCO_LGRECO_FRONT_MAX entries; building it needs that times C. */
    size_t cap = (size_t)LOCO_LGRECO_FRONT_MAX * (size_t)C;
    front_entry **fronts = calloc((size_t)L, sizeof *fronts);
    size_t *sizes = calloc((size_t)L, sizeof *sizes);
    front_entry *work = malloc(cap * sizeof *work);
    loco_status st = LOCO_OK;
    if (NULL == fronts || NULL == sizes || NULL == work) {
        st = loco_error_set(err, LOCO_ERR_NOMEM, "lgreco: out of memory");
    }
    for (int l = 0; l < L && LOCO_OK == st; l++) {
        size_t m = 0, prev = 0 == l ? 1 : sizes[l - 1];
        for (size_t f = 0; f < prev; f++) {
            size_t b0 = 0 == l ? 0 : fronts[l - 1][f].bytes;
            double e0 = 0 == l ? 0.0 : fronts[l - 1][f].error;
            for (int c = 0; c < C; c++) {
                double e = e0 + opts[(size_t)l * C + c].error;
                if (e <= budget) {
                    work[m].bytes = b0 + opts[(size_t)l * C + c].bytes;
                    work[m].error = e;
                    work[m].parent = (int32_t)f;
                    work[m].choice = c;
                    m++;
                }
            }
        }
        if (0 == m) {
            st = loco_error_set(err, LOCO_ERR_RANGE,
                                "lgreco: no choice of candidates keeps the error within the "
                                "budget %g (tensor %d)",
                                budget, l);
            break;
        }
        m = prune_dominated(work, m);
        if (m > LOCO_LGRECO_FRONT_MAX) {
            m = thin_front(work, m, budget, LOCO_LGRECO_FRONT_MAX);
        }
        fronts[l] = malloc(m * sizeof *fronts[l]);
        if (NULL == fronts[l]) {
            st = loco_error_set(err, LOCO_ERR_NOMEM, "lgreco: out of memory");
            break;
        }
        memcpy(fronts[l], work, m * sizeof *work);
        sizes[l] = m;
    }
    if (LOCO_OK == st) {
        /* The front is sorted by bytes: entry 0 is the cheapest feasible assignment. */
        const front_entry *best = &fronts[L - 1][0];
        if (NULL != total_bytes) {
            *total_bytes = best->bytes;
        }
        if (NULL != total_error) {
            *total_error = best->error;
        }
        int32_t at = 0;
        for (int l = L - 1; l >= 0; l--) {
            choice[l] = fronts[l][at].choice;
            at = fronts[l][at].parent;
        }
    }
    for (int l = 0; NULL != fronts && l < L; l++) {
        free(fronts[l]);
    }
    free(fronts);
    free(sizes);
    free(work);
    return st;
}

loco_status loco_lgreco_brute_force(const loco_lgreco_option *opts, int L, int C, double budget,
                                    int *choice, size_t *total_bytes, double *total_error)
{
    if (L < 1 || L > 10 || C < 1) {
        return LOCO_ERR_INVALID_ARG;
    }
    int cur[10] = {0};
    bool found = false;
    size_t best_bytes = 0;
    double best_error = 0.0;
    for (;;) {
        size_t b = 0;
        double e = 0.0;
        for (int l = 0; l < L; l++) {
            b += opts[(size_t)l * C + cur[l]].bytes;
            e += opts[(size_t)l * C + cur[l]].error;
        }
        if (e <= budget && (!found || b < best_bytes || (b == best_bytes && e < best_error))) {
            found = true;
            best_bytes = b;
            best_error = e;
            memcpy(choice, cur, (size_t)L * sizeof *choice);
        }
        int l = 0;
        while (l < L && ++cur[l] == C) {
            cur[l++] = 0;
        }
        if (l == L) {
            break;
        }
    }
    if (!found) {
        return LOCO_ERR_RANGE;
    }
    *total_bytes = best_bytes;
    *total_error = best_error;
    return LOCO_OK;
}
