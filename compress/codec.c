/* compress/codec.c — the codec registry, parameter validation, per-tensor state, and the wire
 * framing every message shares: header, CRC32, optional deflate of the payload (codec_impl.h
 * documents the header layout). The codec families live in their own files. */
#include "codec_impl.h"
#include "crc32.h"
#include "entropy.h"

#include <stdlib.h>
#include <zlib.h>

/* ---- registry ----------------------------------------------------------------------------- */

static const char *const codec_names[LOCO_CODEC_COUNT] = {
    "none", "fp16", "bf16", "maxmin", "qsgd", "fp4", "ternary",
    "sign", "topk", "dgc",  "randk", "dct_topk", "powersgd",
};

static const loco_codec_ops *codec_ops(loco_codec_id id)
{
    switch (id) {
    case LOCO_CODEC_NONE:
    case LOCO_CODEC_FP16:
    case LOCO_CODEC_BF16: return &loco_codec_ops_dense;
    case LOCO_CODEC_MAXMIN: return &loco_codec_ops_maxmin;
    case LOCO_CODEC_QSGD: return &loco_codec_ops_qsgd;
    case LOCO_CODEC_FP4: return &loco_codec_ops_fp4;
    case LOCO_CODEC_TERNARY: return &loco_codec_ops_ternary;
    case LOCO_CODEC_SIGN: return &loco_codec_ops_sign;
    case LOCO_CODEC_TOPK: return &loco_codec_ops_topk;
    case LOCO_CODEC_DGC: return &loco_codec_ops_dgc;
    case LOCO_CODEC_RANDK: return &loco_codec_ops_randk;
    case LOCO_CODEC_DCT_TOPK: return &loco_codec_ops_dct;
    case LOCO_CODEC_POWERSGD: return &loco_codec_ops_powersgd;
    default: return NULL;
    }
}

const char *loco_codec_name(loco_codec_id id)
{
    if ((int)id < 0 || id >= LOCO_CODEC_COUNT) {
        return "unknown";
    }
    return codec_names[id];
}

loco_status loco_codec_id_parse(const char *name, loco_codec_id *id, loco_error *err)
{
    for (int i = 0; i < LOCO_CODEC_COUNT; i++) {
        if (NULL != name && 0 == strcmp(name, codec_names[i])) {
            *id = (loco_codec_id)i;
            return LOCO_OK;
        }
    }
    return loco_error_set(err, LOCO_ERR_CONFIG,
                          "unknown codec '%s': use one of none, fp16, bf16, maxmin, qsgd, fp4, "
                          "ternary, sign, topk, dgc, randk, dct_topk, powersgd",
                          NULL == name ? "(null)" : name);
}

loco_codec_params loco_codec_params_default(loco_codec_id id)
{
    loco_codec_params p;
    memset(&p, 0, sizeof p);
    p.id = id;
    p.bits = 4;
    p.bucket = LOCO_CODEC_SIGN == id ? 0 : 512;
    p.stochastic = LOCO_CODEC_RANDK != id;
    p.density = 0.01f;
    p.chunk_topk = 32;
    p.rank = 4;
    p.clip_sigma = 2.5f;
    p.entropy = false;
    p.dgc_momentum = 0.9f;
    p.dgc_sample = 0.01f;
    p.dgc_warmup_steps = 0;
    p.dgc_clip_norm = 0.0f;
    return p;
}

static bool uses_bits(loco_codec_id id)
{
    return LOCO_CODEC_MAXMIN == id || LOCO_CODEC_QSGD == id || LOCO_CODEC_FP4 == id;
}

static bool uses_bucket(loco_codec_id id)
{
    return uses_bits(id) || LOCO_CODEC_TERNARY == id || LOCO_CODEC_SIGN == id;
}

static bool uses_density(loco_codec_id id)
{
    return LOCO_CODEC_TOPK == id || LOCO_CODEC_DGC == id || LOCO_CODEC_RANDK == id;
}

loco_status loco_codec_params_validate(const loco_codec_params *p, loco_error *err)
{
    if (NULL == p) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "codec params: NULL");
    }
    if ((int)p->id < 0 || p->id >= LOCO_CODEC_COUNT) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "codec.id = %d is not a codec (0..%d)",
                              (int)p->id, LOCO_CODEC_COUNT - 1);
    }
    const char *name = codec_names[p->id];
    if (LOCO_CODEC_MAXMIN == p->id && (p->bits < 1 || p->bits > 8)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "codec.bits = %d for maxmin: use 1..8",
                              p->bits);
    }
    if (LOCO_CODEC_QSGD == p->id && (p->bits < 2 || p->bits > 8)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "codec.bits = %d for qsgd: use 2..8 (one bit is the sign)",
                              p->bits);
    }
    if (LOCO_CODEC_FP4 == p->id && 4 != p->bits) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "codec.bits = %d for fp4: FP4 E3M0 always uses 4 bits", p->bits);
    }
    if (uses_bucket(p->id) && (p->bucket < 0 || p->bucket > (1 << 30))) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "codec.bucket = %d for %s: use 0 (whole message) or 1..2^30",
                              p->bucket, name);
    }
    if (uses_density(p->id) && !(p->density > 0.0f && p->density <= 1.0f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "codec.density = %g for %s: use (0, 1]",
                              (double)p->density, name);
    }
    if (LOCO_CODEC_DCT_TOPK == p->id && (p->chunk_topk < 1 || p->chunk_topk > 4096)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "codec.chunk_topk = %d: use 1..4096 (a chunk has at most 64x64 "
                              "coefficients)",
                              p->chunk_topk);
    }
    if (LOCO_CODEC_POWERSGD == p->id && (p->rank < 1 || p->rank > 1024)) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "codec.rank = %d: use 1..1024", p->rank);
    }
    if (LOCO_CODEC_TERNARY == p->id && !(p->clip_sigma >= 0.0f && p->clip_sigma < 1e30f)) {
        return loco_error_set(err, LOCO_ERR_CONFIG,
                              "codec.clip_sigma = %g: use 0 (off) or a positive multiple of "
                              "the standard deviation (TernGrad uses 2.5)",
                              (double)p->clip_sigma);
    }
    if (LOCO_CODEC_RNG_PHILOX != p->rng && LOCO_CODEC_RNG_ARS != p->rng) {
        return loco_error_set(err, LOCO_ERR_CONFIG, "codec.rng = %d: use philox or ars",
                              (int)p->rng);
    }
    if (LOCO_CODEC_DGC == p->id) {
        if (!(p->dgc_momentum >= 0.0f && p->dgc_momentum < 1.0f)) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "codec.dgc_momentum = %g: use [0, 1)",
                                  (double)p->dgc_momentum);
        }
        if (!(p->dgc_sample > 0.0f && p->dgc_sample <= 1.0f)) {
            return loco_error_set(err, LOCO_ERR_CONFIG, "codec.dgc_sample = %g: use (0, 1]",
                                  (double)p->dgc_sample);
        }
        if (p->dgc_warmup_steps < 0) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.dgc_warmup_steps = %d: use 0 (off) or more",
                                  p->dgc_warmup_steps);
        }
        if (!(p->dgc_clip_norm >= 0.0f && p->dgc_clip_norm < 1e30f)) {
            return loco_error_set(err, LOCO_ERR_CONFIG,
                                  "codec.dgc_clip_norm = %g: use 0 (off) or a positive norm",
                                  (double)p->dgc_clip_norm);
        }
    }
    return LOCO_OK;
}

loco_status loco_codec_init(loco_codec **codec, const loco_codec_params *params, loco_error *err)
{
    *codec = NULL;
    LOCO_TRY(loco_codec_params_validate(params, err));
    loco_codec *c = calloc(1, sizeof *c);
    if (NULL == c) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "codec: out of memory");
    }
    c->params = *params;
    c->ops = codec_ops(params->id);
    *codec = c;
    return LOCO_OK;
}

void loco_codec_free(loco_codec *codec) { free(codec); }

const loco_codec_params *loco_codec_get_params(const loco_codec *codec) { return &codec->params; }

bool loco_codec_needs_state(const loco_codec *codec) { return codec->ops->needs_state; }

size_t loco_codec_header_bytes(void) { return LOCO_WIRE_HEADER_BYTES; }

size_t loco_codec_bound(const loco_codec *codec, size_t n)
{
    return LOCO_WIRE_HEADER_BYTES + codec->ops->payload_bound(&codec->params, n, 0, 0);
}

size_t loco_codec_bound_shape(const loco_codec *codec, size_t rows, size_t cols)
{
    return LOCO_WIRE_HEADER_BYTES +
           codec->ops->payload_bound(&codec->params, rows * cols, rows, cols);
}

/* ---- state -------------------------------------------------------------------------------- */

/* Carve the state's scratch out of one allocation, each piece 64-byte aligned. */
static loco_status state_alloc(loco_codec_state *s, loco_error *err)
{
    size_t sizes[8] = {
        s->sel_cap * sizeof(uint32_t), s->sel_cap * sizeof(float),
        s->scratch_words * sizeof(uint32_t), s->has_dgc ? s->n * sizeof(float) : 0,
        s->has_dgc ? s->n * sizeof(float) : 0, s->sample_cap * sizeof(float),
        s->q_len * sizeof(float), s->p_len * sizeof(float),
    };
    size_t total = 0;
    for (int i = 0; i < 8; i++) {
        total += (sizes[i] + 63) & ~(size_t)63;
    }
    if (0 == total) {
        return LOCO_OK;
    }
    uint8_t *block = loco_alloc_aligned(total);
    if (NULL == block) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "codec state: cannot allocate %zu bytes",
                              total);
    }
    void **slots[8] = {(void **)&s->sel_idx,  (void **)&s->sel_val,  (void **)&s->scratch,
                       (void **)&s->momentum, (void **)&s->velocity, (void **)&s->sample,
                       (void **)&s->q,        (void **)&s->p};
    size_t off = 0;
    for (int i = 0; i < 8; i++) {
        *slots[i] = sizes[i] ? block + off : NULL;
        off += (sizes[i] + 63) & ~(size_t)63;
    }
    s->block = block;
    return LOCO_OK;
}

static loco_status state_create(const loco_codec *codec, size_t rows, size_t cols,
                                loco_codec_state **state, loco_error *err)
{
    *state = NULL;
    loco_codec_state *s = calloc(1, sizeof *s);
    if (NULL == s) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "codec state: out of memory");
    }
    s->id = codec->params.id;
    s->rows = rows;
    s->cols = cols;
    s->n = rows * cols;
    if (NULL != codec->ops->state_plan) {
        codec->ops->state_plan(&codec->params, s);
    }
    loco_status st = state_alloc(s, err);
    if (LOCO_OK != st) {
        free(s);
        return st;
    }
    *state = s;
    return LOCO_OK;
}

loco_status loco_codec_state_init(loco_codec_state **state, const loco_codec *codec, size_t rows,
                                  size_t cols, loco_error *err)
{
    *state = NULL;
    if (0 == rows || 0 == cols || rows > LOCO_CODEC_MAX_N || cols > LOCO_CODEC_MAX_N ||
        rows * cols > LOCO_CODEC_MAX_N) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "codec state: shape %zu x %zu is empty or has more than 2^32-1 "
                              "elements",
                              rows, cols);
    }
    return state_create(codec, rows, cols, state, err);
}

loco_status loco_codec_scratch_state(const loco_codec *codec, size_t n, loco_codec_state **state,
                                     loco_error *err)
{
    return state_create(codec, 1, n, state, err);
}

void loco_codec_state_free(loco_codec_state *state)
{
    if (NULL != state) {
        free(state->block);
        free(state);
    }
}

void loco_codec_state_reset(loco_codec_state *state)
{
    if (NULL == state) {
        return;
    }
    if (state->has_dgc) {
        memset(state->momentum, 0, state->n * sizeof(float));
        memset(state->velocity, 0, state->n * sizeof(float));
    }
    state->q_ready = false;
}

int loco_codec_state_buffers(loco_codec_state *state, loco_codec_buffer bufs[2])
{
    if (NULL == state) {
        return 0;
    }
    if (state->has_dgc) {
        bufs[0] = (loco_codec_buffer){"dgc.momentum", state->momentum, state->n};
        bufs[1] = (loco_codec_buffer){"dgc.velocity", state->velocity, state->n};
        return 2;
    }
    if (NULL != state->q) {
        bufs[0] = (loco_codec_buffer){"powersgd.q", state->q, state->q_len};
        return 1;
    }
    return 0;
}

void loco_codec_state_mark_restored(loco_codec_state *state)
{
    if (NULL != state && NULL != state->q) {
        state->q_ready = true;
    }
}

/* ---- shared helpers ----------------------------------------------------------------------- */

size_t loco_codec_keep_count(float density, size_t n)
{
    if (0 == n) {
        return 0;
    }
    /* density is a float: 0.001f is 0.0010000000475, and 1000 of them must keep 1, not 2 */
    double k = ceil((double)density * (double)n * (1.0 - 1e-7));
    if (k < 1.0) {
        return 1;
    }
    return k >= (double)n ? n : (size_t)k;
}

/* ---- header ------------------------------------------------------------------------------- */

static void wire_write(uint8_t *h, const loco_wire *w)
{
    loco_put_u32(h + 0, LOCO_WIRE_MAGIC);
    h[4] = LOCO_WIRE_VERSION;
    h[5] = w->codec;
    h[6] = w->bits;
    h[7] = w->flags;
    loco_put_u64(h + 8, w->n);
    loco_put_u64(h + 16, w->k);
    loco_put_u64(h + 24, w->nonce);
    loco_put_u64(h + 32, w->payload_len);
    loco_put_u64(h + 40, w->raw_len);
    loco_put_u32(h + 48, w->bucket);
    loco_put_u32(h + 52, w->param);
    loco_put_u32(h + 56, w->rows);
    loco_put_u32(h + 60, w->cols);
    loco_put_u32(h + 64, 0);
}

static uint32_t wire_crc(const uint8_t *msg, size_t payload_len)
{
    uint32_t crc = loco_crc32(0, msg, 68);
    return loco_crc32(crc, msg + LOCO_WIRE_HEADER_BYTES, payload_len);
}

/* Check framing (magic, version, reserved, flags, lengths, CRC, codec id) and parse. */
static loco_status wire_read(const uint8_t *msg, size_t len, loco_wire *w, loco_error *err)
{
    if (NULL == msg || len < LOCO_WIRE_HEADER_BYTES) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "codec message: %zu bytes, shorter than the %d-byte header", len,
                              LOCO_WIRE_HEADER_BYTES);
    }
    uint32_t magic = loco_get_u32(msg);
    if (LOCO_WIRE_MAGIC != magic) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "codec message: bad magic 0x%08x (want 0x%08x \"LOCC\"): not a "
                              "loco codec message",
                              magic, LOCO_WIRE_MAGIC);
    }
    if (LOCO_WIRE_VERSION != msg[4]) {
        return loco_error_set(err, LOCO_ERR_VERSION,
                              "codec message: wire version %u, this build speaks %d; run the "
                              "same loco version on every worker",
                              msg[4], LOCO_WIRE_VERSION);
    }
    memset(w, 0, sizeof *w);
    w->codec = msg[5];
    w->bits = msg[6];
    w->flags = msg[7];
    w->n = loco_get_u64(msg + 8);
    w->k = loco_get_u64(msg + 16);
    w->nonce = loco_get_u64(msg + 24);
    w->payload_len = loco_get_u64(msg + 32);
    w->raw_len = loco_get_u64(msg + 40);
    w->bucket = loco_get_u32(msg + 48);
    w->param = loco_get_u32(msg + 52);
    w->rows = loco_get_u32(msg + 56);
    w->cols = loco_get_u32(msg + 60);
    if (0 != loco_get_u32(msg + 64) || 0 != (w->flags & ~LOCO_WIRE_FLAGS_KNOWN)) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "codec message: reserved header bits are set (flags 0x%02x)",
                              w->flags);
    }
    if (w->payload_len > len - LOCO_WIRE_HEADER_BYTES) {
        return loco_error_set(err, LOCO_ERR_TRUNCATED,
                              "codec message: payload declares %llu bytes, only %zu present",
                              (unsigned long long)w->payload_len, len - LOCO_WIRE_HEADER_BYTES);
    }
    if (w->payload_len < len - LOCO_WIRE_HEADER_BYTES) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "codec message: %zu trailing bytes after the declared payload",
                              (size_t)(len - LOCO_WIRE_HEADER_BYTES - w->payload_len));
    }
    uint32_t want = loco_get_u32(msg + 68), got = wire_crc(msg, (size_t)w->payload_len);
    if (want != got) {
        return loco_error_set(err, LOCO_ERR_CHECKSUM,
                              "codec message: CRC32 0x%08x does not match the content "
                              "(0x%08x): corrupted in transit",
                              want, got);
    }
    if (w->codec >= LOCO_CODEC_COUNT) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED,
                              "codec message: unknown codec id %u (this build knows 0..%d)",
                              w->codec, LOCO_CODEC_COUNT - 1);
    }
    if (w->n > LOCO_CODEC_MAX_N) {
        return loco_error_set(err, LOCO_ERR_RANGE, "codec message: %llu elements (max 2^32-1)",
                              (unsigned long long)w->n);
    }
    bool deflated = 0 != (w->flags & LOCO_WIRE_FLAG_DEFLATED);
    if (!deflated && w->raw_len != w->payload_len) {
        return loco_error_set(err, LOCO_ERR_FORMAT,
                              "codec message: raw length %llu != payload length %llu without "
                              "deflate",
                              (unsigned long long)w->raw_len,
                              (unsigned long long)w->payload_len);
    }
    /* No codec's payload exceeds 8 bytes per element plus small metadata: a deflated payload
     * claiming more is a decompression bomb. */
    if (deflated && w->raw_len > 8 * w->n + 4096) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "codec message: inflated size %llu exceeds any codec's payload "
                              "for %llu elements",
                              (unsigned long long)w->raw_len, (unsigned long long)w->n);
    }
    return LOCO_OK;
}

loco_status loco_codec_peek(const uint8_t *msg, size_t len, loco_codec_info *info,
                            loco_error *err)
{
    loco_wire w;
    LOCO_TRY(wire_read(msg, len, &w, err));
    info->id = (loco_codec_id)w.codec;
    info->n = w.n;
    info->k = w.k;
    info->rows = w.rows;
    info->cols = w.cols;
    info->payload_bytes = (size_t)w.payload_len;
    info->deflated = 0 != (w.flags & LOCO_WIRE_FLAG_DEFLATED);
    return LOCO_OK;
}

/* The raw payload of a message whose header w was read: inflated into *owned if deflated. */
static loco_status wire_payload(const uint8_t *msg, const loco_wire *w, const uint8_t **payload,
                                size_t *payload_len, uint8_t **owned, loco_error *err)
{
    *owned = NULL;
    *payload = msg + LOCO_WIRE_HEADER_BYTES;
    *payload_len = (size_t)w->payload_len;
    if (0 == (w->flags & LOCO_WIRE_FLAG_DEFLATED)) {
        return LOCO_OK;
    }
    uint8_t *raw = malloc(w->raw_len ? (size_t)w->raw_len : 1);
    if (NULL == raw) {
        return loco_error_set(err, LOCO_ERR_NOMEM, "codec decode: cannot allocate %llu bytes",
                              (unsigned long long)w->raw_len);
    }
    loco_status st = loco_inflate_exact(*payload, *payload_len, raw, (size_t)w->raw_len, err);
    if (LOCO_OK != st) {
        free(raw);
        return st;
    }
    *owned = raw;
    *payload = raw;
    *payload_len = (size_t)w->raw_len;
    return LOCO_OK;
}

loco_status loco_wire_open(const uint8_t *msg, size_t len, size_t n, loco_wire *w,
                           const uint8_t **payload, size_t *payload_len, uint8_t **owned,
                           loco_error *err)
{
    *owned = NULL;
    LOCO_TRY(wire_read(msg, len, w, err));
    if (w->n != n) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "codec message (%s): %llu elements, the receiver expects %zu",
                              codec_names[w->codec], (unsigned long long)w->n, n);
    }
    return wire_payload(msg, w, payload, payload_len, owned, err);
}

/* ---- encode ------------------------------------------------------------------------------- */

loco_status loco_codec_encode_ex(const loco_codec *codec, loco_codec_state *state,
                                 const float *in, size_t n, const loco_codec_ctx *ctx,
                                 uint8_t *out, size_t cap, size_t *out_len, loco_error *err)
{
    *out_len = 0;
    if (NULL == codec || NULL == out || (NULL == in && n > 0)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "codec encode: NULL codec/in/out");
    }
    const char *name = codec_names[codec->params.id];
    if (n > LOCO_CODEC_MAX_N) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "codec encode (%s): %zu elements exceed one message (2^32-1); "
                              "split the tensor into chunks",
                              name, n);
    }
    if (cap < LOCO_WIRE_HEADER_BYTES) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "codec encode (%s): capacity %zu < header %d; size the buffer "
                              "with loco_codec_bound",
                              name, cap, LOCO_WIRE_HEADER_BYTES);
    }
    if (NULL == state && codec->ops->needs_state) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "codec encode (%s): this codec keeps per-tensor state (momentum "
                              "or warm start); create one with loco_codec_state_init and pass "
                              "it (stateless use is not possible)",
                              name);
    }
    if (NULL != state && (state->n != n || state->id != codec->params.id)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG,
                              "codec encode (%s): state is for %zu elements of codec %s, input "
                              "has %zu",
                              name, state->n, codec_names[state->id], n);
    }
    static const loco_codec_ctx zero_ctx = {0, 0, 0, 0};
    if (NULL == ctx) {
        ctx = &zero_ctx;
    }
    loco_wire w;
    loco_wire_init(codec, n, &w);
    uint8_t *payload = out + LOCO_WIRE_HEADER_BYTES;
    size_t raw = 0;
    LOCO_TRY(codec->ops->encode(codec, state, in, n, ctx, &w, payload,
                                cap - LOCO_WIRE_HEADER_BYTES, &raw, err));
    return loco_wire_frame(codec, &w, out, raw, out_len, err);
}

void loco_wire_init(const loco_codec *codec, size_t n, loco_wire *w)
{
    memset(w, 0, sizeof *w);
    w->codec = (uint8_t)codec->params.id;
    w->bits = uses_bits(codec->params.id) ? (uint8_t)codec->params.bits : 0;
    w->flags = (codec->params.stochastic ? LOCO_WIRE_FLAG_STOCHASTIC : 0) |
               (codec->params.entropy ? LOCO_WIRE_FLAG_ENTROPY : 0);
    w->n = n;
    w->bucket = uses_bucket(codec->params.id) ? (uint32_t)codec->params.bucket : 0;
}

loco_status loco_wire_frame(const loco_codec *codec, loco_wire *w, uint8_t *out, size_t raw,
                            size_t *out_len, loco_error *err)
{
    uint8_t *payload = out + LOCO_WIRE_HEADER_BYTES;
    w->raw_len = raw;
    w->payload_len = raw;
    if (codec->params.entropy) {
        size_t packed = 0;
        LOCO_TRY(loco_deflate_if_pays(payload, raw, &packed, err));
        if (packed > 0) {
            w->flags |= LOCO_WIRE_FLAG_DEFLATED;
            w->payload_len = packed;
        }
    }
    wire_write(out, w);
    uint32_t crc;
    if (w->payload_crc_known && 0 == (w->flags & LOCO_WIRE_FLAG_DEFLATED)) {
        crc = (uint32_t)crc32_combine(loco_crc32(0, out, 68), w->payload_crc,
                                      (z_off_t)w->payload_len);
    } else {
        crc = wire_crc(out, (size_t)w->payload_len);
    }
    loco_put_u32(out + 68, crc);
    *out_len = LOCO_WIRE_HEADER_BYTES + (size_t)w->payload_len;
    return LOCO_OK;
}

loco_status loco_codec_encode(const loco_codec *codec, loco_codec_state *state, const float *in,
                              size_t n, const loco_codec_ctx *ctx, uint8_t *out, size_t cap,
                              size_t *out_len)
{
    return loco_codec_encode_ex(codec, state, in, n, ctx, out, cap, out_len, NULL);
}

/* ---- decode ------------------------------------------------------------------------------- */

/* Does the header match the parameters the receiver expects? */
static loco_status wire_check_expect(const loco_wire *w, const loco_codec_params *p,
                                     loco_error *err)
{
    const char *name = codec_names[p->id];
    if (w->codec != (uint8_t)p->id) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "codec message: codec %s, this worker expects %s; every worker "
                              "must use the same codec config",
                              loco_codec_name((loco_codec_id)w->codec), name);
    }
    bool stochastic = 0 != (w->flags & LOCO_WIRE_FLAG_STOCHASTIC);
    if ((uses_bits(p->id) && w->bits != p->bits) ||
        (uses_bucket(p->id) && w->bucket != (uint32_t)p->bucket) ||
        ((uses_bucket(p->id) || LOCO_CODEC_RANDK == p->id) && stochastic != p->stochastic)) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "codec message (%s): bits %u bucket %u stochastic %d, expected "
                              "bits %d bucket %d stochastic %d",
                              name, w->bits, w->bucket, stochastic, p->bits, p->bucket,
                              p->stochastic);
    }
    if ((LOCO_CODEC_TOPK == p->id || LOCO_CODEC_RANDK == p->id) &&
        w->k != loco_codec_keep_count(p->density, (size_t)w->n)) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "codec message (%s): keeps %llu of %llu, density %g keeps %zu",
                              name, (unsigned long long)w->k, (unsigned long long)w->n,
                              (double)p->density,
                              loco_codec_keep_count(p->density, (size_t)w->n));
    }
    if ((LOCO_CODEC_DCT_TOPK == p->id && w->param != (uint32_t)p->chunk_topk) ||
        (LOCO_CODEC_POWERSGD == p->id && w->param > (uint32_t)p->rank)) {
        return loco_error_set(err, LOCO_ERR_PROTOCOL,
                              "codec message (%s): parameter %u does not match this worker's "
                              "config",
                              name, w->param);
    }
    return LOCO_OK;
}

loco_status loco_codec_decode_add_ex(const loco_codec *expect, const uint8_t *msg, size_t len,
                                     float *out, size_t n, float scale,
                                     const loco_codec_ctx *ctx, loco_error *err)
{
    if (NULL == out && n > 0) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "codec decode: NULL output");
    }
    if (!isfinite(scale)) {
        return loco_error_set(err, LOCO_ERR_INVALID_ARG, "codec decode: scale %g is not finite",
                              (double)scale);
    }
    loco_wire w;
    LOCO_TRY(wire_read(msg, len, &w, err));
    if (w.n != n) {
        return loco_error_set(err, LOCO_ERR_RANGE,
                              "codec message (%s): %llu elements, the receiver expects %zu",
                              codec_names[w.codec], (unsigned long long)w.n, n);
    }
    if (NULL != expect) {
        LOCO_TRY(wire_check_expect(&w, &expect->params, err));
    }
    if (NULL != ctx && LOCO_CODEC_RANDK == w.codec) {
        uint64_t want = loco_rng_stream_id(ctx->seed, ctx->step, ctx->tensor);
        if (w.nonce != want) {
            return loco_error_set(err, LOCO_ERR_PROTOCOL,
                                  "codec message (randk): index nonce belongs to another "
                                  "step/tensor/seed than step %llu tensor %u",
                                  (unsigned long long)ctx->step, ctx->tensor);
        }
    }
    const uint8_t *payload = NULL;
    size_t payload_len = 0;
    uint8_t *owned = NULL;
    LOCO_TRY(wire_payload(msg, &w, &payload, &payload_len, &owned, err));
    loco_status st = codec_ops((loco_codec_id)w.codec)
                         ->decode_add(&w, payload, payload_len, out, n, scale, err);
    free(owned);
    return st;
}

loco_status loco_codec_decode_add(const loco_codec *expect, const uint8_t *msg, size_t len,
                                  float *out, size_t n, float scale, const loco_codec_ctx *ctx)
{
    return loco_codec_decode_add_ex(expect, msg, len, out, n, scale, ctx, NULL);
}
