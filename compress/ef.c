/* compress/ef.c — error feedback (EF, EF21, EControl) around any codec (ef.h). */
#include "ef.h"
#include "codec_impl.h"

#include <stdlib.h>

struct loco_ef {
    loco_ef_params params;
    size_t n;
    float *e;     /* (n) residual: EF, EControl */
    float *h;     /* (n) estimate: EF21, EControl */
    float *p;     /* (n) the vector handed to the codec */
    float *delta; /* (n) decoded message: EControl */
    void *block;
};

static const char *const ef_names[LOCO_EF_MODE_COUNT] = {"none", "ef", "ef21", "econtrol"};

loco_ef_params loco_ef_params_default(void)
{
    loco_ef_params p = {LOCO_EF_EF, 0.01f, 1.0f};
    return p;
}

const char *loco_ef_mode_name(loco_ef_mode mode)
{
    return (int)mode >= 0 && mode < LOCO_EF_MODE_COUNT ? ef_names[mode] : "unknown";
}

loco_status loco_ef_mode_parse(const char *name, loco_ef_mode *mode, loco_error *err)
{
    for (int i = 0; i < LOCO_EF_MODE_COUNT; i++) {
        if (NULL != name && 0 == strcmp(name, ef_names[i])) {
            *mode = (loco_ef_mode)i;
            return LOCO_OK;
        }
    }
    return loco_error_set(err, LOCO_ERR_CONFIG,
                          "unknown error feedback '%s': use none, ef, ef21 or econtrol",
                          NULL == name ? "(null)" : name);
}

loco_status loco_ef_init(loco_ef **ef, const loco_ef_params *params, size_t n, loco_error *err)
{
    *ef = NULL;
    if ((int)params->mode < 0 || params->mode >= LOCO_EF_MODE_COUNT) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "ef.mode = %d is not a mode",
                              (int)params->mode);
    }
    if (LOCO_EF_ECONTROL == params->mode && !(params->eta > 0.0f && params->eta <= 1.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "ef.eta = %g: use (0, 1]",
                              (double)params->eta);
    }
    if (LOCO_EF_EF == params->mode && !(params->decay > 0.0f && params->decay <= 1.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "ef.decay = %g: use (0, 1]",
                              (double)params->decay);
    }
    loco_ef *s = calloc(1, sizeof *s);
    if (NULL == s) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "ef: out of memory");
    }
    s->params = *params;
    s->n = n;
    bool has_e = LOCO_EF_EF == params->mode || LOCO_EF_ECONTROL == params->mode;
    bool has_h = LOCO_EF_EF21 == params->mode || LOCO_EF_ECONTROL == params->mode;
    bool has_delta = LOCO_EF_ECONTROL == params->mode;
    size_t per = ((n * sizeof(float)) + 63) & ~(size_t)63;
    size_t count = (size_t)has_e + has_h + 1 + has_delta;
    uint8_t *block = loco_alloc_aligned(per * count + 64);
    if (NULL == block) {
        free(s);
        return loco_error_set(err, LOCO_ERR_NOMEM, "ef: cannot allocate %zu bytes", per * count);
    }
    s->block = block;
    uint8_t *at = block;
    s->p = (float *)at;
    at += per;
    if (has_e) {
        s->e = (float *)at;
        at += per;
    }
    if (has_h) {
        s->h = (float *)at;
        at += per;
    }
    if (has_delta) {
        s->delta = (float *)at;
    }
    *ef = s;
    return LOCO_OK;
}

void loco_ef_free(loco_ef *ef)
{
    if (NULL != ef) {
        free(ef->block);
        free(ef);
    }
}

void loco_ef_reset(loco_ef *ef)
{
    if (NULL != ef->e) {
        memset(ef->e, 0, ef->n * sizeof(float));
    }
    if (NULL != ef->h) {
        memset(ef->h, 0, ef->n * sizeof(float));
    }
}

void loco_ef_buffers(loco_ef *ef, float **e, float **h)
{
    *e = ef->e;
    *h = ef->h;
}

loco_status loco_ef_encode(loco_ef *ef, const loco_codec *codec, loco_codec_state *cstate,
                           const float *g, size_t n, const loco_codec_ctx *ctx, uint8_t *out,
                           size_t cap, size_t *out_len, loco_error *err)
{
    *out_len = 0;
    if (n != ef->n) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "ef: state has %zu elements, input %zu",
                              ef->n, n);
    }
    float *p = ef->p, *e = ef->e, *h = ef->h;
    const float decay = ef->params.decay, eta = ef->params.eta;
    switch (ef->params.mode) {
    case LOCO_EF_NONE: memcpy(p, g, n * sizeof(float)); break;
    case LOCO_EF_EF:
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            p[i] = (1.0f == decay ? e[i] : decay * e[i]) + g[i];
        }
        break;
    case LOCO_EF_EF21:
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            p[i] = g[i] - h[i];
        }
        break;
    case LOCO_EF_ECONTROL:
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            p[i] = eta * e[i] + g[i] - h[i];
        }
        break;
    default: return loco_error_set(err, LOCO_ERR_INTERNAL, "ef: bad mode");
    }
    size_t len = 0;
    LOCO_TRY(loco_codec_encode_ex(codec, cstate, p, n, ctx, out, cap, &len, err));
    /* The message is final; now update the state from what receivers will decode. */
    switch (ef->params.mode) {
    case LOCO_EF_EF: /* e = p - D(msg) */
        memcpy(e, p, n * sizeof(float));
        LOCO_TRY(loco_codec_decode_add_ex(NULL, out, len, e, n, -1.0f, ctx, err));
        break;
    case LOCO_EF_EF21: /* h += D(msg) */
        LOCO_TRY(loco_codec_decode_add_ex(NULL, out, len, h, n, 1.0f, ctx, err));
        break;
    case LOCO_EF_ECONTROL: { /* e += g - h - Delta; h += Delta */
        float *delta = ef->delta;
        memset(delta, 0, n * sizeof(float));
        LOCO_TRY(loco_codec_decode_add_ex(NULL, out, len, delta, n, 1.0f, ctx, err));
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            e[i] += g[i] - h[i] - delta[i];
            h[i] += delta[i];
        }
        break;
    }
    default: break;
    }
    *out_len = len;
    return LOCO_OK;
}
