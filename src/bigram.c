/* src/bigram.c — the bigram baseline: the validation loss a model that only looks at the
 * previous token reaches on a dataset. A transformer that cannot beat it has learned nothing
 * beyond byte-pair statistics, so training reports are compared against it.
 *
 * p(b | a) = (count(a, b) + k) / (count(a) + k * V), with the additive smoothing k chosen from a
 * small grid to minimise the validation loss (an upper bound on what the best bigram model
 * reaches, which makes the comparison harder for the transformer, not easier).
 */
#include "src/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

loco_status loco_bigram_val_loss(const loco_token_file *train, const loco_token_file *val,
                                 double *loss, double *smoothing, loco_error *err)
{
    if (train->vocab != val->vocab) {
        return loco_error_set(err, LOCO_ERR_FORMAT, "train and validation vocabularies differ (%u, %u)",
                              train->vocab, val->vocab);
    }
    if (train->vocab > 4096) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "bigram baseline needs vocab <= 4096 (V x V counts), got %u",
                              train->vocab);
    }
    if (val->count < 2) {
        return loco_error_set(err, LOCO_ERR_RANGE, "validation split has fewer than 2 tokens");
    }
    size_t V = train->vocab;
    uint64_t *pair = calloc(V * V, sizeof *pair);
    uint64_t *row = calloc(V, sizeof *row);
    if (NULL == pair || NULL == row) {
        free(pair);
        free(row);
        return loco_error_set(err, LOCO_ERR_NOMEM, "out of memory for bigram counts");
    }
    /* Pairs never span two sources: the model also sees sources concatenated, but the baseline
     * should not learn artefacts of the concatenation order. */
    for (uint32_t s = 0; s < train->source_count; s++) {
        const uint16_t *t = train->tokens + train->sources[s].first;
        for (uint64_t i = 1; i < train->sources[s].count; i++) {
            pair[(size_t)t[i - 1] * V + t[i]]++;
            row[t[i - 1]]++;
        }
    }
    static const double grid[] = {1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001};
    double best = INFINITY, best_k = grid[0];
    for (size_t g = 0; g < sizeof grid / sizeof grid[0]; g++) {
        double k = grid[g], total = 0;
        uint64_t n = 0;
        for (uint32_t s = 0; s < val->source_count; s++) {
            const uint16_t *t = val->tokens + val->sources[s].first;
            for (uint64_t i = 1; i < val->sources[s].count; i++) {
                size_t a = t[i - 1], b = t[i];
                double p = ((double)pair[a * V + b] + k) / ((double)row[a] + k * (double)V);
                total -= log(p);
                n++;
            }
        }
        double mean = n > 0 ? total / (double)n : INFINITY;
        if (mean < best) {
            best = mean;
            best_k = k;
        }
    }
    free(pair);
    free(row);
    *loss = best;
    if (NULL != smoothing) {
        *smoothing = best_k;
    }
    return LOCO_OK;
}
