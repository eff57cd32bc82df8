/* compress/ef.h — error feedback around any codec: EF, EF21 and EControl.
 *
 * With g the vector a worker wants to send this step (e.g. lr * gradient), C = encode and
 * D = decode, each worker keeps per-tensor state and sends one message per step:
 *
 *   EF (Seide et al. 2014; Stich et al. 2018; Karimireddy et al. 2019):
 *       p = decay * e + g;  msg = C(p);  e = p - D(msg)
 *     Receivers apply the mean of D(msg) as the update. sent + residual == p holds exactly for
 *     sparsifiers (e = p + (-1) D(msg) leaves kept entries 0 and others p) and to one rounding
 *     per element for dense codecs. decay < 1 gives DeMo's decaying momentum residual (with the
 *     DCT top-k codec: delta = beta delta + g; send top-k of DCT(delta); delta -= sent).
 *   EF21 (Richtarik, Sokolov, Fatkhullin, NeurIPS 2021, arXiv 2106.05203):
 *       msg = C(g - h);  h += D(msg)
 *     h is the worker's gradient estimate. Receivers keep the global estimate
 *     H += mean(D(msg)) (every worker holds the same H) and step with H.
 *   EControl (Gao, Islamov, Stich, ICLR 2024, arXiv 2311.05645, Algorithm 1):
 *       Delta = C(eta * e + g - h);  e = e + g - h - Delta;  h = h + Delta
 *     One compressed message builds both the EF21-style estimator h and the EF-style error e;
 *     eta in (0, 1] is the strength of the feedback (eta -> 0 is EF21). Receivers keep
 *     H += mean(Delta) and step with H, as for EF21. Checked against an independent
 *     implementation, the code of "A Tight Theory of Error Feedback Algorithms in Distributed
 *     Optimization" (ICML 2026; github.com/DanielBergThomsen/distributed-error-feedback,
 *     pepit_helpers.py): c = C(eta e + g - h), h += c, x -= gamma mean(h) with the new h,
 *     e += g - h with the new h: the same rule. The paper's own Algorithm 1 text was not in the
 *     reference corpus.
 *
 * State: EF holds e (n floats), EF21 h, EControl e and h, plus scratch. One loco_ef per tensor
 * per worker; its buffers are what a checkpoint must save (loco_ef_buffers).
 */
#ifndef LOCO_COMPRESS_EF_H
#define LOCO_COMPRESS_EF_H

#include "compress/codec.h"

typedef enum loco_ef_mode {
    LOCO_EF_NONE = 0,     /* send C(g) */
    LOCO_EF_EF = 1,
    LOCO_EF_EF21 = 2,
    LOCO_EF_ECONTROL = 3,
    LOCO_EF_MODE_COUNT
} loco_ef_mode;

typedef struct loco_ef_params {
    loco_ef_mode mode;
    float eta;   /* EControl feedback strength in (0, 1] */
    float decay; /* EF residual decay in (0, 1] (1 = classic EF; DeMo uses 0.999) */
} loco_ef_params;

typedef struct loco_ef loco_ef;

/* Defaults: EF, eta 0.01, decay 1. EControl needs eta of about the compressor's contraction
 * delta (k / n for top-k): eta = 0.1 with top-k 1% diverges on tests/test_compress_ef.c's
 * quadratic, eta = 0.01 converges. */
loco_ef_params loco_ef_params_default(void);

/* "none", "ef", "ef21", "econtrol"; LOCO_ERR_CONFIG listing them when unknown. */
loco_status loco_ef_mode_parse(const char *name, loco_ef_mode *mode, loco_error *err);
const char *loco_ef_mode_name(loco_ef_mode mode);

/* State for one tensor of n elements. LOCO_ERR_CONFIG for eta/decay out of (0, 1]. */
loco_status loco_ef_init(loco_ef **ef, const loco_ef_params *params, size_t n, loco_error *err);
void loco_ef_free(loco_ef *ef);

/* Zero e and h. */
void loco_ef_reset(loco_ef *ef);

/* Run one step on g[0..n) and write the message (see the rules above). On error the state is
 * unchanged and *out_len is 0. */
loco_status loco_ef_encode(loco_ef *ef, const loco_codec *codec, loco_codec_state *cstate,
                           const float *g, size_t n, const loco_codec_ctx *ctx, uint8_t *out,
                           size_t cap, size_t *out_len, loco_error *err);

/* The persistent buffers: *e (EF, EControl) and *h (EF21, EControl), NULL when unused; n each. */
void loco_ef_buffers(loco_ef *ef, float **e, float **h);

#endif /* LOCO_COMPRESS_EF_H */
