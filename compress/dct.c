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

/* The chunk transforms are written as sums of scaled rows (axpy) rather than dot products, so
 * they vectorise without reassociating any sum (the results do not depend on the compiler's
 * vector width). BcT is Bc transposed: BcT[j * cc + v] = Bc[v * cc + j]. */

/* X (rc x cc) = Br * x_chunk * Bc^T, reading the chunk from the tensor at x (row stride cols). */
static void chunk_forward(const float *x, size_t stride, size_t rc, size_t cc, const float *Br,
                          const float *BcT, float *tmp, float *X)
{
    for (size_t i = 0; i < rc; i++) { /* tmp row i = sum_j x[i][j] * Bc[:, j] */
        const float *row = x + i * stride;
        float *t = tmp + i * cc;
        memset(t, 0, cc * sizeof(float));
        for (size_t j = 0; j < cc; j++) {
            const float a = row[j], *b = BcT + j * cc;
            for (size_t v = 0; v < cc; v++) {
                t[v] += a * b[v];
            }
        }
    }
    memset(X, 0, rc * cc * sizeof(float));
    for (size_t u = 0; u < rc; u++) { /* X row u = sum_i Br[u][i] * tmp row i */
        float *xu = X + u * cc;
        for (size_t i = 0; i < rc; i++) {
            const float b = Br[u * rc + i], *t = tmp + i * cc;
            for (size_t v = 0; v < cc; v++) {
                xu[v] += b * t[v];
            }
        }
    }
}

/* out chunk (row stride cols) += scale * Br^T X Bc for a dense coefficient chunk X. */
static void chunk_inverse_add(const float *X, size_t rc, size_t cc, const float *Br,
                              const float *Bc, float scale, float *tmp, float *out, size_t stride)
{
    memset(tmp, 0, rc * cc * sizeof(float));
    for (size_t i = 0; i < rc; i++) { /* tmp row i = sum_u Br[u][i] * X row u */
        float *t = tmp + i * cc;
        for (size_t u = 0; u < rc; u++) {
            const float b = Br[u * rc + i], *xu = X + u * cc;
            for (size_t v = 0; v < cc; v++) {
                t[v] += b * xu[v];
            }
        }
    }
    for (size_t i = 0; i < rc; i++) { /* out row i += scale * sum_v tmp[i][v] * Bc row v */
        float acc[DCT_MAX] = {0};
        for (size_t v = 0; v < cc; v++) {
            const float a = tmp[i * cc + v], *b = Bc + v * cc;
            for (size_t j = 0; j < cc; j++) {
                acc[j] += a * b[j];
            }
        }
        float *row = out + i * stride;
        for (size_t j = 0; j < cc; j++) {
            row[j] += scale * acc[j];
        }
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
    float Br[DCT_MAX * DCT_MAX], Bc[DCT_MAX * DCT_MAX], BcT[DCT_MAX * DCT_MAX];
    loco_dct_basis(g.rc, Br);
    loco_dct_basis(g.cc, Bc);
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
            chunk_inverse_add(C, g.rc, g.cc, Br, Bc, 1.0f, tmp, out + o, cols);
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
    loco_dct_basis(g.rc, Br);
    loco_dct_basis(g.cc, Bc);
    basis_transpose(Bc, g.cc, BcT);
    uint8_t *idx_region = payload + 4 * g.K;
    int overflow = 0;
#pragma omp parallel for schedule(static) reduction(| : overflow) if (n >= 65536)
    for (size_t q = 0; q < g.nchunks; q++) {
        float tmp[DCT_MAX * DCT_MAX], C[DCT_MAX * DCT_MAX];
        uint64_t keys[DCT_MAX * DCT_MAX];
        uint32_t local[DCT_MAX * DCT_MAX];
        chunk_forward(in + chunk_origin(&g, q), cols, g.rc, g.cc, Br, BcT, tmp, C);
        for (size_t l = 0; l < g.m; l++) {
            keys[l] = coef_key(C[l], l);
        }
        select_largest(keys, g.m, g.kc);
        /* the kept local indices in ascending order: mark, then scan (no sort) */
        uint8_t kept[DCT_MAX * DCT_MAX];
        memset(kept, 0, g.m);
        for (size_t t = 0; t < g.kc; t++) {
            kept[0xFFFFFFFFu - (uint32_t)keys[t]] = 1;
        }
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
    float Br[DCT_MAX * DCT_MAX], Bc[DCT_MAX * DCT_MAX];
    loco_dct_basis(g.rc, Br);
    loco_dct_basis(g.cc, Bc);
    const bool sparse = g.kc < g.rc + g.cc;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t q = 0; q < g.nchunks; q++) {
        uint32_t local[DCT_MAX * DCT_MAX];
        float val[DCT_MAX * DCT_MAX];
        float *o = out + chunk_origin(&g, q);
        dct_chunk_entries(&g, payload, q, local, val);
        if (sparse) { /* sum of kept basis functions: kc * m multiply-adds */
            for (size_t t = 0; t < g.kc; t++) {
                size_t u = local[t] / g.cc, v = local[t] % g.cc;
                for (size_t i = 0; i < g.rc; i++) {
                    float a = scale * val[t] * Br[u * g.rc + i];
                    for (size_t j = 0; j < g.cc; j++) {
                        o[i * g.cols + j] += a * Bc[v * g.cc + j];
                    }
                }
            }
        } else {
            float C[DCT_MAX * DCT_MAX], tmp[DCT_MAX * DCT_MAX];
            memset(C, 0, g.m * sizeof(float));
            for (size_t t = 0; t < g.kc; t++) {
                C[local[t]] = val[t];
            }
            chunk_inverse_add(C, g.rc, g.cc, Br, Bc, scale, tmp, o, g.cols);
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
