/* tests/test_comm_codec.c — the compressed allreduce: every hop decodes into fp32, accumulates
 * and re-encodes; each chunk's owner rounds its value through the codec, so every member ends
 * with identical bytes. codec == NULL is the raw path.
 *
 * compress/ implements compress/codec.h on its own branch. Until it is merged, this file carries
 * a tiny test-only codec (bf16 payload behind a self-describing header with a checksum) with
 * *weak* definitions of the whole codec.h API: once the real library is linked in, its strong
 * definitions take over and these tests run against the real codec (LOCO_CODEC_BF16), so every
 * assertion below holds for any correct bf16 codec.
 */
#include "test_comm_ranks.h"

#include <math.h>

/* ---- test-only codec (weak) ----------------------------------------------------------------- */

struct loco_codec {
    loco_codec_params params;
};

#define TEST_CODEC_MAGIC 0x43545354u /* "TSTC" */
#define TEST_CODEC_HEADER 16         /* magic, count, payload crc, reserved */

__attribute__((weak)) loco_status loco_codec_init(loco_codec **codec,
                                                  const loco_codec_params *params,
                                                  loco_error *err)
{
    if (LOCO_CODEC_BF16 != params->id) {
        return loco_error_set(err, LOCO_ERR_UNSUPPORTED, "test codec: bf16 only");
    }
    *codec = calloc(1, sizeof **codec);
    (*codec)->params = *params;
    return LOCO_OK;
}

__attribute__((weak)) void loco_codec_free(loco_codec *codec) { free(codec); }

__attribute__((weak)) const loco_codec_params *loco_codec_get_params(const loco_codec *codec)
{
    return &codec->params;
}

__attribute__((weak)) const char *loco_codec_name(loco_codec_id id)
{
    return LOCO_CODEC_BF16 == id ? "bf16" : "?";
}

__attribute__((weak)) size_t loco_codec_bound(const loco_codec *codec, size_t n)
{
    return TEST_CODEC_HEADER + 2 * n;
}

__attribute__((weak)) loco_status loco_codec_state_init(loco_codec_state **state,
                                                        const loco_codec *codec, size_t rows,
                                                        size_t cols, loco_error *err)
{
    *state = NULL;
    return LOCO_OK;
}

__attribute__((weak)) void loco_codec_state_free(loco_codec_state *state) {}

static uint32_t test_crc(const uint8_t *p, size_t n)
{
    return (uint32_t)loco_hash64(p, n, 17);
}

__attribute__((weak)) loco_status loco_codec_encode(const loco_codec *codec,
                                                    loco_codec_state *state, const float *in,
                                                    size_t n, const loco_codec_ctx *ctx,
                                                    uint8_t *out, size_t cap, size_t *out_len)
{
    if (cap < TEST_CODEC_HEADER + 2 * n) {
        return LOCO_ERR_RANGE;
    }
    uint8_t *payload = out + TEST_CODEC_HEADER;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(in[i])) {
            return LOCO_ERR_NONFINITE;
        }
        uint16_t h = loco_f32_to_bf16(in[i]);
        memcpy(payload + 2 * i, &h, 2);
    }
    uint32_t head[4] = {TEST_CODEC_MAGIC, (uint32_t)n, test_crc(payload, 2 * n), 0};
    memcpy(out, head, sizeof head);
    *out_len = TEST_CODEC_HEADER + 2 * n;
    return LOCO_OK;
}

__attribute__((weak)) loco_status loco_codec_decode_add(const loco_codec *expect,
                                                        const uint8_t *msg, size_t len,
                                                        float *out, size_t n, float scale,
                                                        const loco_codec_ctx *ctx)
{
    uint32_t head[4];
    if (len < TEST_CODEC_HEADER) {
        return LOCO_ERR_TRUNCATED;
    }
    memcpy(head, msg, sizeof head);
    if (TEST_CODEC_MAGIC != head[0]) {
        return LOCO_ERR_FORMAT;
    }
    if (head[1] != n || len != TEST_CODEC_HEADER + 2 * n) {
        return LOCO_ERR_RANGE;
    }
    if (head[2] != test_crc(msg + TEST_CODEC_HEADER, 2 * n)) {
        return LOCO_ERR_CHECKSUM;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, msg + TEST_CODEC_HEADER + 2 * i, 2);
        out[i] += scale * loco_bf16_to_f32(h);
    }
    return LOCO_OK;
}

/* ---- tests ---------------------------------------------------------------------------------- */

typedef struct codec_case {
    size_t count;
    loco_reduce_op op;
    bool in_place;
    bool raw; /* codec == NULL */
} codec_case;

static void body_codec(rank_slot *s)
{
    const codec_case *c = s->arg;
    loco_codec_params params = {.id = LOCO_CODEC_BF16};
    loco_codec *codec = NULL;
    if (!c->raw && LOCO_OK != loco_codec_init(&codec, &params, NULL)) {
        s->st[0] = LOCO_ERR_INTERNAL;
        return;
    }
    float *x = malloc((c->count + 1) * sizeof *x);
    float *y = c->in_place ? x : malloc((c->count + 1) * sizeof *y);
    float *copy = malloc((c->count + 1) * sizeof *x);
    for (size_t i = 0; i < c->count; i++) {
        x[i] = copy[i] = input_value(s->rank, i);
    }
    loco_codec_ctx ctx = {.seed = 42, .step = 3};
    s->st[0] = loco_allreduce_codec(s->comm, x, y, c->count, c->op, codec, &ctx, &s->info[0]);
    s->st[1] = c->in_place || 0 == memcmp(x, copy, c->count * sizeof *x) ? LOCO_OK
                                                                         : LOCO_ERR_INTERNAL;
    if (!c->in_place) {
        free(x);
    }
    free(copy);
    s->out = y;
    loco_codec_free(codec);
}

static void check_codec(int world, const codec_case *c, double rel_tol)
{
    rank_slot slots[MAX_RANKS];
    loco_comm_config cfg = local_config();
    cfg.chunk_bytes = 16 * 1024; /* several chunks per block */
    run_ranks(world, &cfg, body_codec, (void *)c, slots);
    for (int r = 0; r < world; r++) {
        cr_assert_eq(LOCO_OK, slots[r].st[0], "world %d rank %d: %s", world, r,
                     slots[r].info[0].error);
        cr_assert_eq(LOCO_OK, slots[r].st[1], "rank %d: sendbuf modified", r);
        cr_assert(0 == c->count || 0 == memcmp(slots[0].out, slots[r].out, c->count * 4),
                  "world %d: rank %d's bytes differ from rank 0's", world, r);
    }
    if (world > 1 && c->count > 10000) { /* the ring carried codec messages, not fp32 */
        double raw = 2.0 * (world - 1) / world * (double)c->count * 4;
        double sent = (double)slots[0].info[0].payload_sent;
        cr_assert(c->raw ? sent >= raw * 0.99 : sent < raw * 0.55,
                  "world %d: %.0f payload bytes sent, raw fp32 would be %.0f", world, sent, raw);
    }
    const float *got = slots[0].out;
    for (size_t i = 0; i < c->count; i++) {
        double ref = 0, mag = 0;
        for (int r = 0; r < world; r++) {
            ref += input_value(r, i);
            mag += fabs(input_value(r, i));
        }
        if (LOCO_REDUCE_AVG == c->op) {
            ref /= world;
            mag /= world;
        }
        cr_assert(fabs(got[i] - ref) <= rel_tol * mag + 1e-30,
                  "world %d element %zu: %.7g vs %.7g", world, i, got[i], ref);
        if (!c->raw) { /* the owner's round trip: the result is exactly representable */
            cr_assert_eq(got[i], loco_bf16_to_f32(loco_f32_to_bf16(got[i])));
        }
    }
    for (int r = 0; r < world; r++) {
        free(slots[r].out);
    }
}

Test(codec_allreduce, bf16_codec_bit_identical_and_close_to_reference, .timeout = 120)
{
    static const size_t sizes[] = {0, 1, 7, 10001, 40000};
    for (int world = 1; world <= 4; world++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            codec_case c = {.count = sizes[k], .op = LOCO_REDUCE_SUM};
            /* each of world hops rounds to bf16 (relative 2^-8 each) */
            check_codec(world, &c, (world + 1) * 0x1p-8);
        }
    }
    codec_case avg = {.count = 30001, .op = LOCO_REDUCE_AVG, .in_place = true};
    check_codec(3, &avg, 4 * 0x1p-8);
}

Test(codec_allreduce, null_codec_is_the_raw_fp32_path, .timeout = 60)
{
    codec_case raw = {.count = 50001, .op = LOCO_REDUCE_SUM, .raw = true};
    check_codec(3, &raw, 4 * 0x1p-24);
}
