/* compress/dct.c — DeMo's chunked orthonormal DCT-II and the DCT top-k codec (dct.h). */
#include "dct.h"
#include "bitpack.h"
#include "codec_impl.h"
#include "dct_impl.h"

#include <stdlib.h>

size_t loco_dct_chunk(size_t d)
{
    for (size_t c = d < DCT_MAX ? d : DCT_MAX; c > 1; c--) {
        if (0 == d % c) {
            return c;
        }
    }
    return 1;
}

void loco_dct_basis(size_t m, float *B)
{
    const double pi = 3.14159265358979323846;
    for (size_t u = 0; u < m; u++) {
        double a = sqrt((0 == u ? 1.0 : 2.0) / (double)m);
        for (size_t i = 0; i < m; i++) {
            B[u * m + i] = (float)(a * cos(pi * (double)(2 * i + 1) * (double)u / (2.0 * m)));
        }
    }
}

void loco_dct_naive(const float *x, size_t m, double *X)
{
    const double pi = 3.14159265358979323846;
    for (size_t u = 0; u < m; u++) {
        double s = 0.0;
        for (size_t i = 0; i < m; i++) {
            s += (double)x[i] * cos(pi * (double)(2 * i + 1) * (double)u / (2.0 * m));
        }
        X[u] = s * sqrt((0 == u ? 1.0 : 2.0) / (double)m);
    }
}

/* ---- chunk geometry ------------------------------------------------------------------------- */

void loco_dct_geom_init(loco_dct_geom *g, size_t rows, size_t cols, size_t chunk_topk)
{
    memset(g, 0, sizeof *g);
    g->rows = rows;
    g->cols = cols;
    g->rc = loco_dct_chunk(rows);
    g->cc = loco_dct_chunk(cols);
    g->m = g->rc * g->cc;
    g->kc = chunk_topk < g->m ? chunk_topk : g->m;
    g->nbr = rows / g->rc;
    g->nbc = cols / g->cc;
    g->nchunks = g->nbr * g->nbc;
    while (((size_t)1 << g->ib) < g->m) {
        g->ib++;
    }
    g->idx_bytes = (g->kc * (size_t)g->ib + 7) / 8;
    g->K = g->nchunks * g->kc;
    g->total = 4 * g->K + g->nchunks * g->idx_bytes;
}

/* First element of chunk q in the tensor. */
static inline size_t chunk_origin(const loco_dct_geom *g, size_t q)
{
    return (q / g->nbc) * g->rc * g->cols + (q % g->nbc) * g->cc;
}

/* ---- per-chunk transforms ----------------------------------------------------------------- */

/* Every transform below is a product of two small matrices, C = A B, in which each output is
 * summed over p = 0, 1, ... in order, a multiply and an add apiece (never fused: compress/ is
 * built without contraction): the GPU's DCT kernels sum in the same order, so the bytes match.
 * mat_mul_ordered keeps a 4 x 16 tile of C in registers while it runs over p, so each element
 * of A and B is loaded once per tile instead of once per multiply-add; the tile shape changes
 * which outputs are formed together, never the order of any output's sum. */

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* C (m x n, row stride ldc) = A (m x k, stride lda) B (k x n, stride ldb), each C[i][j] summed
 * in order of p; C is overwritten. */
static void mat_mul_ordered(const float *A, size_t lda, const float *B, size_t ldb, float *C,
                            size_t ldc, size_t m, size_t n, size_t k)
{
    size_t j0 = 0;
#if defined(__AVX2__)
    for (; j0 + 16 <= n; j0 += 16) {
        size_t i = 0;
        for (; i + 4 <= m; i += 4) { /* 4 x 16 outputs in 8 registers */
            __m256 c[4][2];
            for (int r = 0; r < 4; r++) {
                c[r][0] = c[r][1] = _mm256_setzero_ps();
            }
            for (size_t p = 0; p < k; p++) {
                __m256 b0 = _mm256_loadu_ps(B + p * ldb + j0);
                __m256 b1 = _mm256_loadu_ps(B + p * ldb + j0 + 8);
                for (int r = 0; r < 4; r++) {
                    __m256 a = _mm256_broadcast_ss(A + (i + (size_t)r) * lda + p);
                    c[r][0] = _mm256_add_ps(c[r][0], _mm256_mul_ps(a, b0));
                    c[r][1] = _mm256_add_ps(c[r][1], _mm256_mul_ps(a, b1));
                }
            }
            for (int r = 0; r < 4; r++) {
                _mm256_storeu_ps(C + (i + (size_t)r) * ldc + j0, c[r][0]);
                _mm256_storeu_ps(C + (i + (size_t)r) * ldc + j0 + 8, c[r][1]);
            }
        }
        for (; i < m; i++) { /* the last rows, one at a time */
            __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
            for (size_t p = 0; p < k; p++) {
                __m256 a = _mm256_broadcast_ss(A + i * lda + p);
                c0 = _mm256_add_ps(c0, _mm256_mul_ps(a, _mm256_loadu_ps(B + p * ldb + j0)));
                c1 = _mm256_add_ps(c1, _mm256_mul_ps(a, _mm256_loadu_ps(B + p * ldb + j0 + 8)));
            }
            _mm256_storeu_ps(C + i * ldc + j0, c0);
            _mm256_storeu_ps(C + i * ldc + j0 + 8, c1);
        }
    }
#endif
    if (j0 == n) {
        return;
    }
    for (size_t i = 0; i < m; i++) { /* the remaining columns (all of them without AVX2) */
        float *c = C + i * ldc;
        for (size_t j = j0; j < n; j++) {
            c[j] = 0.0f;
        }
        for (size_t p = 0; p < k; p++) {
            const float a = A[i * lda + p], *b = B + p * ldb;
            for (size_t j = j0; j < n; j++) {
                c[j] += a * b[j];
            }
        }
    }
}

/* X (rc x cc) = Br * x_chunk * Bc^T, reading the chunk from the tensor at x (row stride
 * `stride`). BcT is Bc transposed: BcT[j * cc + v] = Bc[v * cc + j]. */
static void chunk_forward(const float *x, size_t stride, size_t rc, size_t cc, const float *Br,
                          const float *BcT, float *tmp, float *X)
{
    /* the chunk's rows first into X, contiguous: rows a power-of-two stride apart would all
     * fall into the same few L1 sets and evict each other while the tiles re-read them */
    for (size_t i = 0; i < rc; i++) {
        memcpy(X + i * cc, x + i * stride, cc * sizeof(float));
    }
    mat_mul_ordered(X, cc, BcT, cc, tmp, cc, rc, cc, cc); /* tmp = x Bc^T (sum over j) */
    mat_mul_ordered(Br, rc, tmp, cc, X, cc, rc, cc, rc);  /* X = Br tmp (sum over i) */
}

/* out chunk (row stride `stride`) += scale * Br^T X Bc for a dense coefficient chunk X. BrT is
 * Br transposed. */
static void chunk_inverse_add(const float *X, size_t rc, size_t cc, const float *BrT,
                              const float *Bc, float scale, float *tmp, float *out, size_t stride)
{
    float acc[DCT_MAX * DCT_MAX];
    mat_mul_ordered(BrT, rc, X, cc, tmp, cc, rc, cc, rc); /* tmp = Br^T X (sum over u) */
    mat_mul_ordered(tmp, cc, Bc, cc, acc, cc, rc, cc, cc); /* acc = tmp Bc (sum over v) */
    for (size_t i = 0; i < rc; i++) {
        float *row = out + i * stride;
        for (size_t j = 0; j < cc; j++) {
            row[j] += scale * acc[i * cc + j];
        }
    }
}

/* The row and column bases of g's chunks (computed once when the chunk is square: a basis
 * costs m * m double cosines). */
static void chunk_bases(const loco_dct_geom *g, float *Br, float *Bc)
{
    loco_dct_basis(g->rc, Br);
    if (g->cc == g->rc) {
        memcpy(Bc, Br, g->rc * g->rc * sizeof(float));
    } else {
        loco_dct_basis(g->cc, Bc);
    }
}

/* Bc transposed (m x m). */
static void basis_transpose(const float *B, size_t m, float *BT)
{
    for (size_t v = 0; v < m; v++) {
        for (size_t j = 0; j < m; j++) {
            BT[j * m + v] = B[v * m + j];
        }
    }
}

/* Chunked transform of a whole rows x cols tensor, forward (DCT) or inverse (IDCT). */
static void dct_transform(const float *in, size_t rows, size_t cols, float *out, bool inverse)
{
    loco_dct_geom g;
    loco_dct_geom_init(&g, rows, cols, 1);
    float Br[DCT_MAX * DCT_MAX], BrT[DCT_MAX * DCT_MAX], Bc[DCT_MAX * DCT_MAX],
        BcT[DCT_MAX * DCT_MAX];
    chunk_bases(&g, Br, Bc);
    basis_transpose(Br, g.rc, BrT);
    basis_transpose(Bc, g.cc, BcT);
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (size_t q = 0; q < g.nchunks; q++) {
        float tmp[DCT_MAX * DCT_MAX], C[DCT_MAX * DCT_MAX];
        size_t o = chunk_origin(&g, q);
        if (inverse) {
            for (size_t u = 0; u < g.rc; u++) {
                memcpy(C + u * g.cc, in + o + u * cols, g.cc * sizeof(float));
                memset(out + o + u * cols, 0, g.cc * sizeof(float));
            }
            chunk_inverse_add(C, g.rc, g.cc, BrT, Bc, 1.0f, tmp, out + o, cols);
        } else {
            chunk_forward(in + o, cols, g.rc, g.cc, Br, BcT, tmp, C);
            for (size_t u = 0; u < g.rc; u++) {
                memcpy(out + o + u * cols, C + u * g.cc, g.cc * sizeof(float));
            }
        }
    }
}

void loco_dct_forward(const float *x, size_t rows, size_t cols, float *X)
{
    dct_transform(x, rows, cols, X, false);
}

void loco_dct_inverse(const float *X, size_t rows, size_t cols, float *x)
{
    dct_transform(X, rows, cols, x, true);
}

/* ---- per-chunk top-k ------------------------------------------------------------------------- */

/* Keys that order by |X| descending, then local index ascending; all distinct. */
static inline uint64_t coef_key(float v, size_t local)
{
    return ((uint64_t)(loco_f32_bits(v) & 0x7FFFFFFFu) << 32) | (uint64_t)(0xFFFFFFFFu - local);
}

/* Move the k largest of a[0..m) to a[0..k) (quickselect with a middle pivot; the keys are
 * distinct, so the set is unique). */
static void select_largest(uint64_t *a, size_t m, size_t k)
{
    if (0 == k || k >= m) {
        return;
    }
    size_t lo = 0, hi = m - 1; /* inclusive range holding position k - 1 */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t pivot = a[mid];
        a[mid] = a[hi];
        a[hi] = pivot;
        size_t store = lo;
        for (size_t j = lo; j < hi; j++) {
            if (a[j] > pivot) {
                uint64_t t = a[store];
                a[store++] = a[j];
                a[j] = t;
            }
        }
        a[hi] = a[store];
        a[store] = pivot; /* a[lo, store) > pivot = a[store] > a(store, hi] */
        if (store == k - 1) {
            return;
        }
        if (store > k - 1) {
            hi = store - 1;
        } else {
            lo = store + 1;
        }
    }
}

/* kept[l] = 1 for the k largest coefficients of C[0..m) by |C| (ties: the lower index), else 0.
 * The set is unique, so how it is found does not change a byte: a histogram of the top 11 bits
 * of |C| finds the bin holding the k-th largest; everything above that bin is kept, and only
 * that bin's members go through the quickselect. */
static void select_kept(const float *C, size_t m, size_t k, uint8_t *kept)
{
    enum { BINS = 2048, SHIFT = 20 }; /* |C|'s bits 30..20: exponent and 3 mantissa bits */
    if (k >= m) {
        memset(kept, 1, m);
        return;
    }
    memset(kept, 0, m);
    if (0 == k) {
        return;
    }
    uint32_t count[BINS] = {0};
    for (size_t l = 0; l < m; l++) {
        count[(loco_f32_bits(C[l]) & 0x7FFFFFFFu) >> SHIFT]++;
    }
    size_t above = 0, bin = BINS;
    while (above + count[bin - 1] < k) { /* the bin where the running count reaches k */
        above += count[--bin];
    }
    bin--;
    uint64_t keys[DCT_MAX * DCT_MAX];
    size_t nk = 0;
    for (size_t l = 0; l < m; l++) {
        uint32_t b = (loco_f32_bits(C[l]) & 0x7FFFFFFFu) >> SHIFT;
        if (b > bin) {
            kept[l] = 1;
        } else if (b == bin) {
            keys[nk++] = coef_key(C[l], l);
        }
    }
    size_t need = k - above; /* 1 .. count[bin] */
    select_largest(keys, nk, need);
    for (size_t t = 0; t < need; t++) {
        kept[0xFFFFFFFFu - (uint32_t)keys[t]] = 1;
    }
}

/* ---- the codec ------------------------------------------------------------------------------ */

static size_t dct_payload_bound(const loco_codec_params *p, size_t n, size_t rows, size_t cols)
{
    if (rows > 0) {
        loco_dct_geom g;
        loco_dct_geom_init(&g, rows, cols, (size_t)p->chunk_topk);
        return g.total;
    }
    /* Any shape: at most n coefficients of 4 bytes, <= 12 index bits each, a byte per chunk. */
    return 7 * n + 8;
}

static loco_status dct_encode(const loco_codec *codec, loco_codec_state *state, const float *in,
                              size_t n, const loco_codec_ctx *ctx, loco_wire *w,
                              uint8_t *payload, size_t cap, size_t *len, loco_error *err)
{
    size_t rows = NULL == state ? 1 : state->rows, cols = NULL == state ? n : state->cols;
    loco_dct_geom g;
    loco_dct_geom_init(&g, rows, cols, (size_t)codec->params.chunk_topk);
    if (g.total > cap) {
        return loco_error_set(err, LOCO_ERR_RANGE, "dct_topk encode: needs %zu bytes, capacity %zu",
                              g.total, cap);
    }
    if (!loco_all_finite(in, n)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "dct_topk encode: input has NaN or Inf");
    }
    float Br[DCT_MAX * DCT_MAX], Bc[DCT_MAX * DCT_MAX], BcT[DCT_MAX * DCT_MAX];
    chunk_bases(&g, Br, Bc);
    basis_transpose(Bc, g.cc, BcT);
    uint8_t *idx_region = payload + 4 * g.K;
    int overflow = 0;
#pragma omp parallel for schedule(static) reduction(| : overflow) if (n >= 65536)
    for (size_t q = 0; q < g.nchunks; q++) {
        float tmp[DCT_MAX * DCT_MAX], C[DCT_MAX * DCT_MAX];
        uint32_t local[DCT_MAX * DCT_MAX];
        chunk_forward(in + chunk_origin(&g, q), cols, g.rc, g.cc, Br, BcT, tmp, C);
        /* the kept local indices in ascending order: mark, then scan (no sort) */
        uint8_t kept[DCT_MAX * DCT_MAX];
        select_kept(C, g.m, g.kc, kept);
        for (size_t l = 0, t = 0; l < g.m; l++) {
            local[t] = (uint32_t)l;
            t += kept[l];
        }
        loco_bitwriter bw;
        loco_bitwriter_init(&bw, idx_region + q * g.idx_bytes, g.idx_bytes);
        for (size_t t = 0; t < g.kc; t++) {
            loco_put_f32(payload + 4 * (q * g.kc + t), C[local[t]]);
            loco_bitwriter_put(&bw, local[t], g.ib);
            overflow |= !isfinite(C[local[t]]);
        }
        loco_bitwriter_finish(&bw);
    }
    if (overflow) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "dct_topk encode: a DCT coefficient overflows fp32 (values too "
                              "large); scale the input down");
    }
    w->k = g.K;
    w->param = (uint32_t)codec->params.chunk_topk;
    w->rows = (uint32_t)rows;
    w->cols = (uint32_t)cols;
    *len = g.total;
    return LOCO_OK;
}

/* Check a DCT payload against its header for n elements; fill the geometry. */
static loco_status dct_validate(const loco_wire *w, const uint8_t *payload, size_t len, size_t n,
                                loco_dct_geom *g, loco_error *err)
{
    if (0 != w->bits || 0 != w->bucket || 0 != w->nonce) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "dct_topk message: header fields unused by this codec are not zero");
    }
    if (w->param < 1 || w->param > 4096 || (uint64_t)w->rows * w->cols != n || 0 == w->rows ||
        (n > 0 && 0 == w->cols) || (0 == n && 1 != w->rows)) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "dct_topk message: chunk_topk %u, shape %u x %u for %zu elements",
                              w->param, w->rows, w->cols, n);
    }
    loco_dct_geom_init(g, w->rows, w->cols, w->param);
    if (w->k != g->K) {
        return loco_error_set(err, LOCO_ERR_RANGE, "dct_topk message: k = %llu, shape implies %zu",
                              (unsigned long long)w->k, g->K);
    }
    if (len != g->total) {
        return loco_error_set(err, len < g->total ? LOCO_ERR_TRUNCATED : LOCO_ERR_FORMAT,
                              "dct_topk message: payload %zu bytes, exactly %zu expected", len,
                              g->total);
    }
    for (size_t t = 0; t < g->K; t++) {
        if (!isfinite(loco_get_f32(payload + 4 * t))) {
            return loco_error_set(err, LOCO_ERR_NONFINITE, "dct_topk message: value %zu is NaN/Inf",
                                  t);
        }
    }
    const uint8_t *idx_region = payload + 4 * g->K;
    for (size_t q = 0; q < g->nchunks; q++) {
        loco_bitreader br;
        loco_bitreader_init(&br, idx_region + q * g->idx_bytes, g->idx_bytes);
        int64_t prev = -1;
        for (size_t t = 0; t < g->kc; t++) {
            uint64_t l = 0;
            loco_bitreader_get(&br, g->ib, &l); /* cannot run short: idx_bytes fits kc * ib */
            if (l >= g->m || (int64_t)l <= prev) {
                return loco_error_set(err, l >= g->m ? LOCO_ERR_RANGE : LOCO_ERR_FORMAT,
                                      "dct_topk message: chunk %zu index %llu (chunk has %zu, "
                                      "indices must increase)",
                                      q, (unsigned long long)l, g->m);
            }
            prev = (int64_t)l;
        }
        uint64_t pad = 0;
        loco_bitreader_get(&br, (int)(br.end - br.pos), &pad);
        if (0 != pad) {
            return loco_error_set(err, LOCO_ERR_FORMAT, "dct_topk message: chunk %zu padding", q);
        }
    }
    return LOCO_OK;
}

/* Read chunk q's kept (local index, value) pairs (validated). */
static void dct_chunk_entries(const loco_dct_geom *g, const uint8_t *payload, size_t q,
                              uint32_t *local, float *val)
{
    loco_bitreader br;
    loco_bitreader_init(&br, payload + 4 * g->K + q * g->idx_bytes, g->idx_bytes);
    for (size_t t = 0; t < g->kc; t++) {
        uint64_t l = 0;
        loco_bitreader_get(&br, g->ib, &l);
        local[t] = (uint32_t)l;
        val[t] = loco_get_f32(payload + 4 * (q * g->kc + t));
    }
}

static loco_status dct_decode_add(const loco_wire *w, const uint8_t *payload, size_t len,
                                  float *out, size_t n, float scale, loco_error *err)
{
    loco_dct_geom g;
    LOCO_TRY(dct_validate(w, payload, len, n, &g, err));
    float Br[DCT_MAX * DCT_MAX], BrT[DCT_MAX * DCT_MAX], Bc[DCT_MAX * DCT_MAX];
    chunk_bases(&g, Br, Bc);
    basis_transpose(Br, g.rc, BrT);
    const bool sparse = g.kc < g.rc + g.cc;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t q = 0; q < g.nchunks; q++) {
        uint32_t local[DCT_MAX * DCT_MAX];
        float val[DCT_MAX * DCT_MAX];
        float *o = out + chunk_origin(&g, q);
        dct_chunk_entries(&g, payload, q, local, val);
        if (sparse) { /* sum of kept basis functions: kc * m multiply-adds, on a contiguous
                       * copy of the chunk (rows a power-of-two stride apart share L1 sets) */
            float oc[DCT_MAX * DCT_MAX];
            for (size_t i = 0; i < g.rc; i++) {
                memcpy(oc + i * g.cc, o + i * g.cols, g.cc * sizeof(float));
            }
            for (size_t t = 0; t < g.kc; t++) {
                size_t u = local[t] / g.cc, v = local[t] % g.cc;
                for (size_t i = 0; i < g.rc; i++) {
                    float a = scale * val[t] * Br[u * g.rc + i];
                    for (size_t j = 0; j < g.cc; j++) {
                        oc[i * g.cc + j] += a * Bc[v * g.cc + j];
                    }
                }
            }
            for (size_t i = 0; i < g.rc; i++) {
                memcpy(o + i * g.cols, oc + i * g.cc, g.cc * sizeof(float));
            }
        } else {
            float C[DCT_MAX * DCT_MAX], tmp[DCT_MAX * DCT_MAX];
            memset(C, 0, g.m * sizeof(float));
            for (size_t t = 0; t < g.kc; t++) {
                C[local[t]] = val[t];
            }
            chunk_inverse_add(C, g.rc, g.cc, BrT, Bc, scale, tmp, o, g.cols);
        }
    }
    return LOCO_OK;
}

loco_status loco_dct_add_coefficients(const uint8_t *msg, size_t len, size_t rows, size_t cols,
                                      float scale, float *coef, float *count, loco_error *err)
{
    if (!isfinite(scale)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "dct: scale is not finite");
    }
    loco_wire w;
    const uint8_t *payload;
    size_t plen;
    uint8_t *owned;
    LOCO_TRY(loco_wire_open(msg, len, rows * cols, &w, &payload, &plen, &owned, err));
    loco_status st = LOCO_OK;
    loco_dct_geom g;
    if (LOCO_CODEC_DCT_TOPK != w.codec) {
        st = loco_error_set(err, LOCO_ERR_PROTOCOL, "dct: message is codec %s, not dct_topk",
                            loco_codec_name((loco_codec_id)w.codec));
    } else if (w.rows != rows || w.cols != cols) {
        st = loco_error_set(err, LOCO_ERR_RANGE, "dct: message shape %u x %u, expected %zu x %zu",
                            w.rows, w.cols, rows, cols);
    } else {
        st = dct_validate(&w, payload, plen, rows * cols, &g, err);
    }
    if (LOCO_OK == st) {
        for (size_t q = 0; q < g.nchunks; q++) {
            uint32_t local[DCT_MAX * DCT_MAX];
            float val[DCT_MAX * DCT_MAX];
            dct_chunk_entries(&g, payload, q, local, val);
            for (size_t t = 0; t < g.kc; t++) {
                size_t at = chunk_origin(&g, q) + (local[t] / g.cc) * cols + local[t] % g.cc;
                coef[at] += scale * val[t];
                if (NULL != count) {
                    count[at] += 1.0f;
                }
            }
        }
    }
    free(owned);
    return st;
}

const loco_codec_ops loco_codec_ops_dct = {
    dct_payload_bound, dct_encode, dct_decode_add, NULL, false,
};
