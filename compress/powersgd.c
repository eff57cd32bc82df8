/* compress/powersgd.c — PowerSGD's power step and the low-rank codec (powersgd.h). */
#include "powersgd.h"
#include "codec_impl.h"

#include <stdlib.h>

#define LOCO_POWERSGD_STREAM 0x50535344ull /* "PSSD" */

void loco_powersgd_init_q(float *q, size_t cols, size_t r, uint64_t seed, uint32_t tensor)
{
    loco_rng rng;
    loco_rng_init(&rng, seed, loco_rng_stream_id(LOCO_POWERSGD_STREAM, tensor, 0));
    for (size_t i = 0; i < cols * r; i++) {
        q[i] = loco_rng_normal(&rng);
    }
}

void loco_powersgd_project(const float *m, size_t rows, size_t cols, const float *q, size_t r,
                           float *p)
{
    /* Row i of P: sum_j M[i][j] Q[j][:]. Each row accumulates its own r sums in j order (eight
     * interleaved partial sums per column of Q, added in order), so the result is fixed. */
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (size_t i = 0; i < rows; i++) {
        const float *mi = m + i * cols;
        for (size_t c = 0; c < r; c++) {
            float part[8] = {0};
            size_t full = cols / 8 * 8;
            for (size_t j = 0; j < full; j += 8) {
                for (int l = 0; l < 8; l++) {
                    part[l] += mi[j + (size_t)l] * q[(j + (size_t)l) * r + c];
                }
            }
            for (size_t j = full; j < cols; j++) {
                part[j % 8] += mi[j] * q[j * r + c];
            }
            float s = 0.0f;
            for (int l = 0; l < 8; l++) {
                s += part[l];
            }
            p[i * r + c] = s;
        }
    }
}

void loco_powersgd_orthogonalize(float *p, size_t rows, size_t r)
{
    for (size_t c = 0; c < r; c++) {
        double before = 0.0;
        for (size_t i = 0; i < rows; i++) {
            before += (double)p[i * r + c] * p[i * r + c];
        }
        for (int pass = 0; pass < 2; pass++) {
            for (size_t d = 0; d < c; d++) {
                double dot = 0.0;
                for (size_t i = 0; i < rows; i++) {
                    dot += (double)p[i * r + c] * p[i * r + d];
                }
                for (size_t i = 0; i < rows; i++) {
                    p[i * r + c] = (float)(p[i * r + c] - dot * p[i * r + d]);
                }
            }
        }
        double norm = 0.0;
        for (size_t i = 0; i < rows; i++) {
            norm += (double)p[i * r + c] * p[i * r + c];
        }
        /* Dependent (or zero) column: what is left is rounding noise. */
        bool dependent = !(norm > 1e-10 * before) || 0.0 == norm;
        double inv = dependent ? 0.0 : 1.0 / sqrt(norm);
        for (size_t i = 0; i < rows; i++) {
            p[i * r + c] = (float)(p[i * r + c] * inv);
        }
    }
}

void loco_powersgd_back(const float *m, size_t rows, size_t cols, const float *p, size_t r,
                        float *q)
{
    /* Q[j][c] = sum_i M[i][j] P[i][c], summed in i order: each thread owns a block of 256
     * columns of M and adds the scaled rows M[i][block] into a column-major accumulator. */
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (size_t j0 = 0; j0 < cols; j0 += 256) {
        size_t width = cols - j0 < 256 ? cols - j0 : 256;
        float acc[16][256];
        for (size_t c0 = 0; c0 < r; c0 += 16) {
            size_t cn = r - c0 < 16 ? r - c0 : 16;
            for (size_t c = 0; c < cn; c++) {
                memset(acc[c], 0, width * sizeof(float));
            }
            for (size_t i = 0; i < rows; i++) {
                const float *mi = m + i * cols + j0;
                for (size_t c = 0; c < cn; c++) {
                    const float a = p[i * r + c0 + c];
                    float *t = acc[c];
                    for (size_t j = 0; j < width; j++) {
                        t[j] += a * mi[j];
                    }
                }
            }
            for (size_t j = 0; j < width; j++) {
                for (size_t c = 0; c < cn; c++) {
                    q[(j0 + j) * r + c0 + c] = acc[c][j];
                }
            }
        }
    }
}

void loco_powersgd_reconstruct_add(const float *p, const float *q, size_t rows, size_t cols,
                                   size_t r, float scale, float *out)
{
    /* out row i += scale * sum_c P[i][c] Q[:, c], as scaled rows of Q^T (vectorises). */
#pragma omp parallel for schedule(static) if (rows * cols >= 65536)
    for (size_t j0 = 0; j0 < cols; j0 += 256) {
        size_t width = cols - j0 < 256 ? cols - j0 : 256;
        float qt[16][256]; /* Q^T for columns j0 .. j0 + width, 16 factors at a time */
        for (size_t c0 = 0; c0 < r; c0 += 16) {
            size_t cn = r - c0 < 16 ? r - c0 : 16;
            for (size_t j = 0; j < width; j++) {
                for (size_t c = 0; c < cn; c++) {
                    qt[c][j] = q[(j0 + j) * r + c0 + c];
                }
            }
            for (size_t i = 0; i < rows; i++) {
                float *o = out + i * cols + j0;
                float acc[256] = {0};
                for (size_t c = 0; c < cn; c++) {
                    const float a = p[i * r + c0 + c];
                    for (size_t j = 0; j < width; j++) {
                        acc[j] += a * qt[c][j];
                    }
                }
                for (size_t j = 0; j < width; j++) {
                    o[j] += scale * acc[j];
                }
            }
        }
    }
}

/* ---- the codec ------------------------------------------------------------------------------ */

static size_t rank_of(const loco_codec_params *p, size_t rows, size_t cols)
{
    size_t r = (size_t)p->rank;
    r = r < rows ? r : rows;
    return r < cols ? r : cols;
}

static size_t powersgd_payload_bound(const loco_codec_params *p, size_t n, size_t rows,
                                     size_t cols)
{
    if (rows > 0) {
        return 4 * rank_of(p, rows, cols) * (rows + cols);
    }
    return 8 * n + 8; /* min(a, b) (a + b) <= 2 a b for any a x b = n */
}

static void powersgd_state_plan(const loco_codec_params *p, loco_codec_state *s)
{
    size_t r = rank_of(p, s->rows, s->cols);
    s->q_len = s->cols * r;
    s->p_len = s->rows * r;
}

static loco_status powersgd_encode(const loco_codec *codec, loco_codec_state *s, const float *in,
                                   size_t n, const loco_codec_ctx *ctx, loco_wire *w,
                                   uint8_t *payload, size_t cap, size_t *len, loco_error *err)
{
    size_t rows = s->rows, cols = s->cols, r = rank_of(&codec->params, rows, cols);
    size_t bytes = 4 * r * (rows + cols);
    if (bytes > cap) {
        return loco_error_set(err, LOCO_ERR_RANGE, "powersgd encode: needs %zu bytes, capacity %zu",
                              bytes, cap);
    }
    if (!loco_all_finite(in, n)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "powersgd encode: input has NaN or Inf");
    }
    if (!s->q_ready) {
        loco_powersgd_init_q(s->q, cols, r, ctx->seed, ctx->tensor);
        s->q_ready = true;
    }
    /* Keep the old Q in the payload's Q slot until the new one is known to be finite. */
    uint8_t *q_slot = payload + 4 * rows * r;
    memcpy(q_slot, s->q, 4 * cols * r);
    loco_powersgd_project(in, rows, cols, s->q, r, s->p);
    loco_powersgd_orthogonalize(s->p, rows, r);
    loco_powersgd_back(in, rows, cols, s->p, r, s->q);
    if (!loco_all_finite(s->p, rows * r) || !loco_all_finite(s->q, cols * r)) {
        memcpy(s->q, q_slot, 4 * cols * r);
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "powersgd encode: the factors overflow fp32 (values too large); "
                              "scale the input down");
    }
    memcpy(payload, s->p, 4 * rows * r);
    memcpy(q_slot, s->q, 4 * cols * r);
    /* Keep the warm start alive: redraw Q columns that became zero. */
    for (size_t c = 0; c < r; c++) {
        bool zero = true;
        for (size_t j = 0; j < cols && zero; j++) {
            zero = 0.0f == s->q[j * r + c];
        }
        if (zero) {
            loco_rng rng;
            loco_rng_init(&rng, ctx->seed, loco_rng_stream_id(LOCO_POWERSGD_STREAM, ctx->tensor,
                                                              ctx->step + 1));
            for (size_t j = 0; j < cols; j++) {
                s->q[j * r + c] = loco_rng_normal(&rng);
            }
        }
    }
    w->param = (uint32_t)r;
    w->rows = (uint32_t)rows;
    w->cols = (uint32_t)cols;
    *len = bytes;
    return LOCO_OK;
}

static loco_status powersgd_decode_add(const loco_wire *w, const uint8_t *payload, size_t len,
                                       float *out, size_t n, float scale, loco_error *err)
{
    if (0 != w->bits || 0 != w->bucket || 0 != w->nonce || 0 != w->k) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "powersgd message: header fields unused by this codec are not zero");
    }
    size_t rows = w->rows, cols = w->cols, r = w->param;
    if ((uint64_t)rows * cols != n || 0 == n || 0 == r || r > rows || r > cols || r > 1024) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "powersgd message: rank %zu, shape %zu x %zu for %zu elements", r,
                              rows, cols, n);
    }
    size_t bytes = 4 * r * (rows + cols);
    if (len != bytes) {
        return loco_error_set(err, len < bytes ? LOCO_ERR_TRUNCATED : LOCO_ERR_FORMAT,
                              "powersgd message: payload %zu bytes, exactly %zu expected", len,
                              bytes);
    }
    for (size_t t = 0; t < r * (rows + cols); t++) {
        if (!isfinite(loco_get_f32(payload + 4 * t))) {
            return loco_error_set(err, LOCO_ERR_NONFINITE,
                                  "powersgd message: factor entry %zu is NaN/Inf", t);
        }
    }
    float *factors = malloc(bytes ? bytes : 1);
    if (NULL == factors) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "powersgd decode: cannot allocate %zu bytes",
                              bytes);
    }
    memcpy(factors, payload, bytes);
    loco_powersgd_reconstruct_add(factors, factors + rows * r, rows, cols, r, scale, out);
    free(factors);
    return LOCO_OK;
}

const loco_codec_ops loco_codec_ops_powersgd = {
    powersgd_payload_bound, powersgd_encode, powersgd_decode_add, powersgd_state_plan, true,
};
