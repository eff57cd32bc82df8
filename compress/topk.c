/* compress/topk.c — exact top-k by radix select (topk.h), its naive reference, and the top-k
 * codec: k = ceil(density * n) (index, value) pairs in the sparse payload (sparse_impl.h). */
#include "topk.h"
#include "codec_impl.h"
#include "sparse_impl.h"

#include <stdlib.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define D1_SHIFT 20                      /* first digit: top 11 bits of the 31-bit key */
#define D1_BINS 2048
#define DL_BITS 10                       /* second and third digits: 10 bits each */
#define DL_BINS 1024
#define NONFINITE_BIN (0x7F800000u >> D1_SHIFT)

/* |x| as an integer that orders like |x| (for finite x). */
static inline uint32_t mag_key(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u & 0x7FFFFFFFu;
}

/* Partitions of [0, n): fixed by n (never by the thread count), at most 64. */
static size_t partition_count(size_t n)
{
    return n >= 65536 ? (n / 32768 < 64 ? n / 32768 : 64) : 1;
}

size_t loco_topk_scratch_words(size_t k, size_t n)
{
    size_t cand = 2 * k + 4096;
    cand = cand < n ? cand : n;
    return partition_count(n) * (D1_BINS + 2 * DL_BINS) + 2 * cand;
}

/* The bin holding the k-th largest (1 <= k <= total): *above gets the count in higher bins. */
static size_t find_bin(const uint64_t *hist, size_t bins, uint64_t k, uint64_t *above)
{
    uint64_t cum = 0;
    for (size_t b = bins; b-- > 0;) {
        if (cum + hist[b] >= k) {
            *above = cum;
            return b;
        }
        cum += hist[b];
    }
    *above = cum;
    return 0; /* unreachable for k <= total */
}

/* Partition p of P over [0, n): fixed by n, never by the thread count. */
static inline void part_range(size_t n, size_t P, size_t p, size_t *lo, size_t *hi)
{
    *lo = n / P * p + (p < n % P ? p : n % P);
    *hi = *lo + n / P + (p < n % P ? 1 : 0);
}

/* Pass 1: histogram of the top 11 key bits of x[lo, hi) into h (D1_BINS). */
static void hist_top(const float *x, size_t lo, size_t hi, uint32_t *h)
{
    uint32_t sub[4][D1_BINS];
    memset(sub, 0, sizeof sub);
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        sub[0][mag_key(x[i]) >> D1_SHIFT]++;
        sub[1][mag_key(x[i + 1]) >> D1_SHIFT]++;
        sub[2][mag_key(x[i + 2]) >> D1_SHIFT]++;
        sub[3][mag_key(x[i + 3]) >> D1_SHIFT]++;
    }
    for (; i < hi; i++) {
        sub[0][mag_key(x[i]) >> D1_SHIFT]++;
    }
    for (int b = 0; b < D1_BINS; b++) {
        h[b] = sub[0][b] + sub[1][b] + sub[2][b] + sub[3][b];
    }
}

/* Histogram of a 10-bit digit (key >> shift) of the elements of x[lo, hi) whose key >> (shift +
 * 10) equals prefix. */
static void hist_digit(const float *x, size_t lo, size_t hi, int shift, uint32_t prefix,
                       uint32_t *h)
{
    memset(h, 0, DL_BINS * sizeof *h);
    for (size_t i = lo; i < hi; i++) {
        uint32_t key = mag_key(x[i]);
        if (key >> (shift + DL_BITS) == prefix) {
            h[(key >> shift) & (DL_BINS - 1)]++;
        }
    }
}

/* Resolve the threshold key T among candidates (index, value-bits pairs) that share the top
 * digit b: T is the need-th largest key; *ties gets how many keys equal to T to keep. */
static uint32_t refine_candidates(const uint32_t *cand, size_t m, uint32_t b, uint64_t need,
                                  uint64_t *ties)
{
    uint64_t h[DL_BINS] = {0};
    for (size_t c = 0; c < m; c++) {
        h[((cand[2 * c + 1] & 0x7FFFFFFFu) >> DL_BITS) & (DL_BINS - 1)]++;
    }
    uint64_t above2;
    uint32_t b2 = (uint32_t)find_bin(h, DL_BINS, need, &above2);
    memset(h, 0, sizeof h);
    for (size_t c = 0; c < m; c++) {
        uint32_t key = cand[2 * c + 1] & 0x7FFFFFFFu;
        if (((key >> DL_BITS) & (DL_BINS - 1)) == b2) {
            h[key & (DL_BINS - 1)]++;
        }
    }
    uint64_t above3;
    uint32_t b3 = (uint32_t)find_bin(h, DL_BINS, need - above2, &above3);
    *ties = need - above2 - above3;
    return (b << D1_SHIFT) | (b2 << DL_BITS) | b3;
}

/* Pass 2 over x[lo, hi): elements whose top digit is above b go to (idx, val) in order; those
 * equal to b go to cand as (index, value bits) pairs. With AVX2, 8 elements are tested at a
 * time and groups without a hit (almost all of them) are skipped. */
static void collect_range(const float *x, size_t lo, size_t hi, uint32_t b, uint32_t *idx,
                          float *val, uint32_t *cand)
{
    size_t i = lo, o = 0, c = 0;
#if defined(__AVX2__)
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
    const __m256i below = _mm256_set1_epi32((int)((b << D1_SHIFT) - 1)); /* key > below: bin >= b */
    for (; i + 8 <= hi; i += 8) {
        __m256i key = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), abs_mask);
        int hits = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(key, below)));
        while (hits) {
            size_t at = i + (size_t)__builtin_ctz((unsigned)hits);
            hits &= hits - 1;
            uint32_t bits;
            memcpy(&bits, &x[at], 4);
            if ((bits & 0x7FFFFFFFu) >> D1_SHIFT > b) {
                idx[o] = (uint32_t)at;
                val[o++] = x[at];
            } else {
                cand[2 * c] = (uint32_t)at;
                cand[2 * c++ + 1] = bits;
            }
        }
    }
#endif
    for (; i < hi; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        uint32_t bin = (bits & 0x7FFFFFFFu) >> D1_SHIFT;
        if (bin > b) {
            idx[o] = (uint32_t)i;
            val[o++] = x[i];
        } else if (bin == b) {
            cand[2 * c] = (uint32_t)i;
            cand[2 * c++ + 1] = bits;
        }
    }
}

static loco_status select_all(const float *x, size_t n, uint32_t *idx, float *val,
                              loco_error *err)
{
    if (!loco_all_finite(x, n)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "top-k: input has NaN or Inf");
    }
    for (size_t i = 0; i < n; i++) {
        idx[i] = (uint32_t)i;
        val[i] = x[i];
    }
    return LOCO_OK;
}

loco_status loco_topk_select(const float *x, size_t n, size_t k, uint32_t *idx, float *val,
                             uint32_t *scratch, size_t words, loco_error *err)
{
    if (k > n || n > LOCO_CODEC_MAX_N) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "top-k: k = %zu of n = %zu", k, n);
    }
    if (0 == k) {
        return loco_all_finite(x, n)
                   ? LOCO_OK
                   : loco_error_set(err, LOCO_ERR_NONFINITE, "top-k: input has NaN or Inf");
    }
    if (k == n) {
        return select_all(x, n, idx, val, err);
    }
    const size_t P = partition_count(n), hist_words = P * (D1_BINS + 2 * DL_BINS);
    size_t offs[4 * 64];
    uint32_t *h1 = NULL, *owned = NULL, *cand = NULL;
    size_t cand_cap = 0;
    if (NULL != scratch && words >= hist_words) {
        h1 = scratch;
        cand = scratch + hist_words;
        cand_cap = (words - hist_words) / 2;
    } else {
        h1 = owned = malloc(hist_words * sizeof *h1);
        cand = scratch;
        cand_cap = NULL == scratch ? 0 : words / 2;
        if (NULL == owned) {
            return loco_error_set(err, LOCO_ERR_NOMEM, "top-k: cannot allocate histograms");
        }
    }
    uint32_t *h2 = h1 + P * D1_BINS, *h3 = h2 + P * DL_BINS;
    size_t *gt = offs, *eq = offs + P, *off = offs + 2 * P, *take = offs + 3 * P;

    /* Pass 1: top-digit histograms per partition, then the threshold bin b. */
#pragma omp parallel for schedule(static) if (P > 1)
    for (size_t p = 0; p < P; p++) {
        size_t lo, hi;
        part_range(n, P, p, &lo, &hi);
        hist_top(x, lo, hi, h1 + p * D1_BINS);
    }
    uint64_t H[D1_BINS] = {0};
    for (size_t p = 0; p < P; p++) {
        for (int b = 0; b < D1_BINS; b++) {
            H[b] += h1[p * D1_BINS + b];
        }
    }
    loco_status st = LOCO_OK;
    for (uint32_t b = NONFINITE_BIN; b < D1_BINS; b++) {
        if (H[b] > 0) {
            st = loco_error_set(err, LOCO_ERR_NONFINITE, "top-k: input has NaN or Inf");
        }
    }
    uint64_t above;
    const uint32_t b = (uint32_t)find_bin(H, D1_BINS, k, &above);
    const uint64_t need = k - above, in_bin = H[b];
    for (size_t p = 0; p < P && LOCO_OK == st; p++) {
        gt[p] = 0;
        for (uint32_t bin = b + 1; bin < D1_BINS; bin++) {
            gt[p] += h1[p * D1_BINS + bin];
        }
        eq[p] = h1[p * D1_BINS + b];
    }

    if (LOCO_OK != st) {
        /* fall through to cleanup */
    } else if (need == in_bin) {
        /* The whole bin is kept: one more pass writes everything with top digit >= b. */
        for (size_t p = 0, acc = 0; p < P; p++) {
            off[p] = acc;
            acc += gt[p] + eq[p];
        }
#pragma omp parallel for schedule(static) if (P > 1)
        for (size_t p = 0; p < P; p++) {
            size_t lo, hi, o = off[p];
            part_range(n, P, p, &lo, &hi);
            for (size_t i = lo; i < hi; i++) {
                if (mag_key(x[i]) >> D1_SHIFT >= b) {
                    idx[o] = (uint32_t)i;
                    val[o] = x[i];
                    o++;
                }
            }
        }
    } else if (in_bin <= cand_cap) {
        /* Pass 2: elements above bin b go straight to the output; bin b's are candidates. */
        for (size_t p = 0, acc_gt = 0, acc_eq = 0; p < P; p++) {
            off[p] = acc_gt;
            take[p] = acc_eq;
            acc_gt += gt[p];
            acc_eq += eq[p];
        }
#pragma omp parallel for schedule(static) if (P > 1)
        for (size_t p = 0; p < P; p++) {
            size_t lo, hi;
            part_range(n, P, p, &lo, &hi);
            collect_range(x, lo, hi, b, idx + off[p], val + off[p], cand + 2 * take[p]);
        }
        uint64_t ties;
        uint32_t T = refine_candidates(cand, (size_t)in_bin, b, need, &ties);
        /* Keep candidates above T and the first `ties` equal to T, in index order (in place). */
        size_t kept = 0;
        for (size_t c = 0; c < in_bin; c++) {
            uint32_t key = cand[2 * c + 1] & 0x7FFFFFFFu;
            if (key > T || (key == T && ties > 0)) {
                ties -= key == T;
                cand[2 * kept] = cand[2 * c];
                cand[2 * kept + 1] = cand[2 * c + 1];
                kept++;
            }
        }
        /* Merge the two index-sorted lists from the back into idx[0..k) (candidates carry their
         * values, so nothing is gathered from x). */
        size_t i = (size_t)above, j = kept, o = k;
        while (j > 0) {
            if (i > 0 && idx[i - 1] > cand[2 * (j - 1)]) {
                idx[o - 1] = idx[i - 1];
                val[o - 1] = val[i - 1];
                i--;
            } else {
                idx[o - 1] = cand[2 * (j - 1)];
                memcpy(&val[o - 1], &cand[2 * (j - 1) + 1], 4);
                j--;
            }
            o--;
        }
    } else {
        /* Heavy ties: resolve the low 20 bits with two more histogram passes over the input. */
#pragma omp parallel for schedule(static) if (P > 1)
        for (size_t p = 0; p < P; p++) {
            size_t lo, hi;
            part_range(n, P, p, &lo, &hi);
            hist_digit(x, lo, hi, DL_BITS, b, h2 + p * DL_BINS);
        }
        uint64_t G[DL_BINS] = {0};
        for (size_t p = 0; p < P; p++) {
            for (int d = 0; d < DL_BINS; d++) {
                G[d] += h2[p * DL_BINS + d];
            }
        }
        uint64_t above2;
        uint32_t b2 = (uint32_t)find_bin(G, DL_BINS, need, &above2);
        uint32_t prefix = (b << DL_BITS) | b2;
#pragma omp parallel for schedule(static) if (P > 1)
        for (size_t p = 0; p < P; p++) {
            size_t lo, hi;
            part_range(n, P, p, &lo, &hi);
            hist_digit(x, lo, hi, 0, prefix, h3 + p * DL_BINS);
        }
        memset(G, 0, sizeof G);
        for (size_t p = 0; p < P; p++) {
            for (int d = 0; d < DL_BINS; d++) {
                G[d] += h3[p * DL_BINS + d];
            }
        }
        uint64_t above3;
        uint32_t b3 = (uint32_t)find_bin(G, DL_BINS, need - above2, &above3);
        uint64_t ties = need - above2 - above3;
        const uint32_t T = (prefix << DL_BITS) | b3;
        for (size_t p = 0, acc = 0, eq_before = 0; p < P; p++) {
            for (uint32_t d = b2 + 1; d < DL_BINS; d++) {
                gt[p] += h2[p * DL_BINS + d];
            }
            for (uint32_t d = b3 + 1; d < DL_BINS; d++) {
                gt[p] += h3[p * DL_BINS + d];
            }
            eq[p] = h3[p * DL_BINS + b3];
            size_t want = ties > eq_before ? (size_t)(ties - eq_before) : 0;
            take[p] = want < eq[p] ? want : eq[p];
            eq_before += eq[p];
            off[p] = acc;
            acc += gt[p] + take[p];
        }
#pragma omp parallel for schedule(static) if (P > 1)
        for (size_t p = 0; p < P; p++) {
            size_t lo, hi, o = off[p], left = take[p];
            part_range(n, P, p, &lo, &hi);
            for (size_t i = lo; i < hi; i++) {
                uint32_t key = mag_key(x[i]);
                if (key > T || (key == T && left > 0)) {
                    left -= key == T;
                    idx[o] = (uint32_t)i;
                    val[o] = x[i];
                    o++;
                }
            }
        }
    }
    free(owned);
    return st;
}

size_t loco_topk_gather_at_least(const float *x, size_t n, float thr, uint32_t *idx, float *val,
                                 size_t cap)
{
    size_t i = 0, c = 0;
#if defined(__AVX2__)
    const __m256 t = _mm256_set1_ps(thr), abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
        int hits = _mm256_movemask_ps(_mm256_cmp_ps(a, t, _CMP_GE_OQ));
        while (hits) {
            size_t at = i + (size_t)__builtin_ctz((unsigned)hits);
            hits &= hits - 1;
            if (c < cap) {
                idx[c] = (uint32_t)at;
                val[c] = x[at];
            }
            c++;
        }
    }
#endif
    for (; i < n; i++) {
        if (fabsf(x[i]) >= thr) {
            if (c < cap) {
                idx[c] = (uint32_t)i;
                val[c] = x[i];
            }
            c++;
        }
    }
    return c;
}

/* ---- reference ------------------------------------------------------------------------------ */

typedef struct naive_entry {
    uint32_t key, index;
} naive_entry;

static int naive_by_magnitude(const void *a, const void *b)
{
    const naive_entry *x = a, *y = b;
    if (x->key != y->key) {
        return x->key > y->key ? -1 : 1;
    }
    return x->index < y->index ? -1 : (x->index > y->index);
}

static int naive_by_index(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : (x > y);
}

loco_status loco_topk_select_naive(const float *x, size_t n, size_t k, uint32_t *idx,
                                   float *val)
{
    naive_entry *e = malloc((n ? n : 1) * sizeof *e);
    if (NULL == e) {
        return LOCO_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        e[i].key = mag_key(x[i]);
        e[i].index = (uint32_t)i;
    }
    qsort(e, n, sizeof *e, naive_by_magnitude);
    for (size_t j = 0; j < k; j++) {
        idx[j] = e[j].index;
    }
    qsort(idx, k, sizeof *idx, naive_by_index);
    for (size_t j = 0; j < k; j++) {
        val[j] = x[idx[j]];
    }
    free(e);
    return LOCO_OK;
}

/* ---- the codec ------------------------------------------------------------------------------ */

static size_t topk_payload_bound(const loco_codec_params *p, size_t n, size_t rows, size_t cols)
{
    return loco_sparse_bound(loco_codec_keep_count(p->density, n));
}

static void topk_state_plan(const loco_codec_params *p, loco_codec_state *s)
{
    size_t k = loco_codec_keep_count(p->density, s->n);
    s->sel_cap = k;
    s->scratch_words = loco_topk_scratch_words(k, s->n);
}

static loco_status topk_encode(const loco_codec *codec, loco_codec_state *state,
                               const float *in, size_t n, const loco_codec_ctx *ctx,
                               loco_wire *w, uint8_t *payload, size_t cap, size_t *len,
                               loco_error *err)
{
    loco_codec_state *scratch = NULL;
    if (NULL == state) {
        LOCO_TRY(loco_codec_scratch_state(codec, n, &scratch, err));
        state = scratch;
    }
    size_t k = loco_codec_keep_count(codec->params.density, n);
    loco_status st = loco_topk_select(in, n, k, state->sel_idx, state->sel_val, state->scratch,
                                      state->scratch_words, err);
    if (LOCO_OK == st) {
        w->k = k;
        st = loco_sparse_write(state->sel_idx, state->sel_val, k, n, codec->params.entropy,
                               payload, cap, len, err);
    }
    loco_codec_state_free(scratch);
    return st;
}

const loco_codec_ops loco_codec_ops_topk = {
    topk_payload_bound, topk_encode, loco_sparse_decode_add, topk_state_plan, false,
};
