/* compress/dgc.c — the DGC codec: momentum correction, sampled threshold, masking (dgc.h). */
#include "dgc.h"
#include "codec_impl.h"
#include "sparse_impl.h"
#include "topk.h"

float loco_dgc_density(const loco_codec_params *p, uint64_t step)
{
    if (p->dgc_warmup_steps <= 0 || step >= (uint64_t)p->dgc_warmup_steps) {
        return p->density;
    }
    uint64_t stage = step * 4 / (uint64_t)p->dgc_warmup_steps; /* 0..3 */
    float d = 0.25f;
    for (uint64_t s = 0; s < stage; s++) {
        d *= 0.25f;
    }
    return d > p->density ? d : p->density;
}

/* Most entries a DGC message can carry for n elements: 1.3 k at the largest density. */
static size_t dgc_max_keep(const loco_codec_params *p, size_t n)
{
    float d = p->dgc_warmup_steps > 0 && p->density < 0.25f ? 0.25f : p->density;
    size_t k = loco_codec_keep_count(d, n);
    size_t most = k + (size_t)(0.3 * (double)k) + 1;
    return most < n ? most : n;
}

static size_t dgc_payload_bound(const loco_codec_params *p, size_t n, size_t rows, size_t cols)
{
    return loco_sparse_bound(dgc_max_keep(p, n));
}

static size_t dgc_sample_stride(const loco_codec_params *p)
{
    double s = 1.0 / (double)p->dgc_sample;
    return s < 1.0 ? 1 : (size_t)(s + 0.5);
}

static void dgc_state_plan(const loco_codec_params *p, loco_codec_state *s)
{
    float d = p->dgc_warmup_steps > 0 && p->density < 0.25f ? 0.25f : p->density;
    s->sel_cap = dgc_max_keep(p, s->n);
    s->scratch_words = loco_topk_scratch_words(loco_codec_keep_count(d, s->n), s->n);
    s->has_dgc = true;
    s->sample_cap = (s->n + dgc_sample_stride(p) - 1) / dgc_sample_stride(p) + 1;
}

/* The k-th largest of a[0..m) (1 <= k <= m), reordering a: quickselect with a three-way
 * partition [> pivot | == pivot | < pivot] and a median-of-three pivot. */
static float kth_largest(float *a, size_t m, size_t k)
{
    size_t lo = 0, hi = m, want = k - 1;
    while (hi - lo > 1) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
        float pivot = x > y ? (y > z ? y : (x > z ? z : x)) : (x > z ? x : (y > z ? z : y));
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            float t = a[i];
            if (t > pivot) {
                a[i++] = a[lt];
                a[lt++] = t;
            } else if (t < pivot) {
                a[i] = a[--gt];
                a[gt] = t;
            } else {
                i++;
            }
        }
        if (want < lt) {
            hi = lt;
        } else if (want >= gt) {
            lo = gt;
        } else {
            return pivot;
        }
    }
    return a[lo];
}

static loco_status dgc_encode(const loco_codec *codec, loco_codec_state *s, const float *in,
                              size_t n, const loco_codec_ctx *ctx, loco_wire *w,
                              uint8_t *payload, size_t cap, size_t *len, loco_error *err)
{
    const loco_codec_params *p = &codec->params;
    if (cap < loco_sparse_bound(s->sel_cap)) {
        return loco_error_set(err, LOCO_ERR_RANGE, "dgc encode: capacity %zu < bound %zu", cap,
                              loco_sparse_bound(s->sel_cap));
    }
    if (!loco_all_finite(in, n)) {
        return loco_error_set(err, LOCO_ERR_NONFINITE, "dgc encode: input has NaN or Inf");
    }
    /* Local clipping, then momentum correction: u = m u + g, v += u. */
    float factor = 1.0f;
    if (p->dgc_clip_norm > 0.0f) {
        double sumsq = 0.0;
        for (size_t i = 0; i < n; i++) {
            sumsq += (double)in[i] * in[i];
        }
        double norm = sqrt(sumsq);
        if (norm > p->dgc_clip_norm) {
            factor = (float)(p->dgc_clip_norm / norm);
        }
    }
    float m = p->dgc_momentum, *u = s->momentum, *v = s->velocity;
    uint32_t overflow = 0;
#pragma omp parallel for schedule(static) reduction(| : overflow) if (n >= 65536)
    for (size_t i = 0; i < n; i++) {
        u[i] = m * u[i] + factor * in[i];
        v[i] += u[i];
        uint32_t bits;
        memcpy(&bits, &v[i], 4);
        overflow |= (uint32_t)((bits & 0x7F800000u) == 0x7F800000u);
    }
    if (overflow) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "dgc encode: the velocity overflowed fp32 (gradients too large; "
                              "use dgc_clip_norm); reset the state");
    }
    size_t k = loco_codec_keep_count(loco_dgc_density(p, ctx->step), n);
    size_t count = 0, most = k + (size_t)(0.3 * (double)k);
    most = most < s->sel_cap ? most : s->sel_cap;
    if (n > 0) {
        /* Threshold from a strided sample with a random start, then gather in one pass; lower
         * the threshold while fewer than 0.8 k qualify. */
        size_t stride = dgc_sample_stride(p);
        uint32_t r[4];
        loco_rng_block(ctx->seed, loco_codec_stream(ctx), 0, r);
        size_t start = stride > n ? r[0] % n : r[0] % stride;
        size_t ns = 0;
        for (size_t i = start; i < n && ns < s->sample_cap; i += stride) {
            s->sample[ns++] = fabsf(v[i]);
        }
        size_t ks = loco_codec_keep_count(loco_dgc_density(p, ctx->step), ns);
        float thr = kth_largest(s->sample, ns, ks);
        count = loco_topk_gather_at_least(v, n, thr, s->sel_idx, s->sel_val, most);
        for (int tries = 0; tries < 10 && count < k - k / 5 && thr > 0.0f; tries++) {
            thr *= 0.8f;
            count = loco_topk_gather_at_least(v, n, thr, s->sel_idx, s->sel_val, most);
        }
    }
    loco_status st = LOCO_OK;
    if (count > most) { /* too many above the sampled threshold: exact top-k */
        count = k;
        st = loco_topk_select(v, n, k, s->sel_idx, s->sel_val, s->scratch, s->scratch_words, err);
    }
    if (LOCO_OK == st) {
        w->k = count;
        st = loco_sparse_write(s->sel_idx, s->sel_val, count, n, p->entropy, payload, cap, len,
                               err);
    }
    if (LOCO_OK == st) { /* momentum factor masking */
        for (size_t j = 0; j < count; j++) {
            v[s->sel_idx[j]] = 0.0f;
            u[s->sel_idx[j]] = 0.0f;
        }
    }
    return st;
}

const loco_codec_ops loco_codec_ops_dgc = {
    dgc_payload_bound, dgc_encode, loco_sparse_decode_add, dgc_state_plan, true,
};
