/* compress/topk.h — exact top-k selection by magnitude (used by the top-k and DGC codecs, the
 * benchmarks and the tests).
 *
 * The result is defined exactly: the k entries with the largest |x|, ties broken toward the
 * lowest index, returned with indices ascending. So min |kept| >= max |dropped|, and equal
 * magnitudes at the threshold are kept in index order.
 *
 * Algorithm (radix select on the bits of |x|, which order like the magnitudes): pass 1
 * histograms the top 11 bits of every |x| (4 interleaved sub-histograms per partition); the bin
 * holding the k-th largest is found from the top. Pass 2 writes every element above that bin
 * straight to the output and gathers the bin's elements as candidates, whose remaining 20 bits
 * are resolved by two 10-bit histograms over the (small) candidate list. Two reads of the input
 * in all. If the candidates do not fit the scratch (heavy ties), two more histogram passes over
 * the input resolve the threshold instead. Partitions are fixed by n (not by the thread count)
 * and run in parallel with OpenMP.
 */
#ifndef LOCO_COMPRESS_TOPK_H
#define LOCO_COMPRESS_TOPK_H

#include "base/status.h"

#include <stddef.h>
#include <stdint.h>

/* uint32 words of scratch for the fast path of selecting k of n: the partition histograms and
 * room for 2 k + 4096 candidates. */
size_t loco_topk_scratch_words(size_t k, size_t n);

/* Select the top k of x[0..n) (k <= n) into idx[0..k) (ascending) and val[k] = x[idx]. scratch
 * (words uint32) is optional: with loco_topk_scratch_words(k, n) words nothing is allocated;
 * with fewer, the histograms are allocated per call and candidates that do not fit take the
 * all-pass path (still exact). LOCO_ERR_NONFINITE if x has a NaN or Inf, LOCO_ERR_NOMEM if the
 * histograms cannot be allocated. */
loco_status loco_topk_select(const float *x, size_t n, size_t k, uint32_t *idx, float *val,
                             uint32_t *scratch, size_t words, loco_error *err);

/* Gather (i, x_i) for every |x_i| >= thr, in index order, into idx/val: at most cap are written,
 * the rest only counted. Returns how many qualify. (DGC's threshold pass; AVX2 tests 8 values
 * at a time.) */
size_t loco_topk_gather_at_least(const float *x, size_t n, float thr, uint32_t *idx, float *val,
                                 size_t cap);

/* The reference: sort all indices by (|x| descending, index ascending), keep k, sort them.
 * O(n log n) and allocating; for tests and the benchmark's check only. */
loco_status loco_topk_select_naive(const float *x, size_t n, size_t k, uint32_t *idx,
                                   float *val);

#endif /* LOCO_COMPRESS_TOPK_H */
