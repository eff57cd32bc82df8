/* tests/test_model_golden.c — loco's model against PyTorch: the fixture tests/golden/
 * model_golden.bin (written by tests/golden/gen_model_golden.py with torch 1.13) holds a 3-layer
 * GQA model with cross-layer K/V sharing, its weights, a batch, and torch's logits, loss and
 * gradients. loco must reproduce them to fp32 accuracy. */
#include "src/model.h"
#include "tests/model_testutil.h"

#include <criterion/criterion.h>
#include <stdlib.h>

typedef struct reader {
    const char *data;
    size_t len, pos;
} reader;

static void take_bytes(reader *r, void *out, size_t n)
{
    cr_assert(r->pos + n <= r->len, "fixture truncated at byte %zu", r->pos);
    memcpy(out, r->data + r->pos, n);
    r->pos += n;
}

static int32_t take_i32(reader *r)
{
    int32_t v;
    take_bytes(r, &v, 4);
    return v;
}

Test(model_golden, matches_pytorch_logits_loss_and_gradients)
{
    char *data;
    size_t len;
    loco_error err = {0};
    cr_assert_eq(loco_file_read_all(LOCO_SRC_DIR "/tests/golden/model_golden.bin", 1 << 24, &data,
                                    &len, &err),
                 LOCO_OK, "%s", err.msg);
    reader r = {data, len, 0};
    char magic[8];
    take_bytes(&r, magic, 8);
    cr_assert_eq(memcmp(magic, "LOCOGLD1", 8), 0, "bad fixture magic");
    loco_model_config cfg;
    loco_model_config_default(&cfg);
    cfg.n_layer = take_i32(&r);
    cfg.n_embd = take_i32(&r);
    cfg.n_head = take_i32(&r);
    cfg.n_kv_head = take_i32(&r);
    cfg.ctx = take_i32(&r);
    cfg.vocab = take_i32(&r);
    int B = take_i32(&r), T = take_i32(&r);
    for (int l = 0; l < cfg.n_layer; l++) {
        cfg.kv_src[l] = take_i32(&r);
    }
    size_t n = (size_t)take_i32(&r);
    loco_model *m = NULL;
    cr_assert_eq(loco_model_init(&m, &cfg, B, T, &err), LOCO_OK, "%s", err.msg);
    cr_assert_eq(loco_model_num_params(m), n, "fixture has %zu parameters, loco's table %zu", n,
                 loco_model_num_params(m));
    size_t BT = (size_t)B * T, V = (size_t)cfg.vocab;
    uint16_t *tokens = malloc(BT * 2), *targets = malloc(BT * 2);
    float *logits = malloc(BT * V * 4), *grads = malloc(n * 4), want_loss;
    take_bytes(&r, loco_model_params(m), n * 4);
    take_bytes(&r, tokens, BT * 2);
    take_bytes(&r, targets, BT * 2);
    take_bytes(&r, logits, BT * V * 4);
    take_bytes(&r, &want_loss, 4);
    take_bytes(&r, grads, n * 4);
    cr_assert_eq(r.pos, len, "trailing bytes in the fixture");

    float loss;
    loco_model_zero_grad(m);
    cr_assert_eq(loco_model_forward(m, tokens, targets, B, T, &loss, &err), LOCO_OK, "%s", err.msg);
    cr_assert(fabsf(loss - want_loss) <= 2e-6f * want_loss, "loss %.8f, torch %.8f", loss,
              want_loss);
    size_t worst;
    double e = norm_err_ff(loco_model_logits(m), logits, BT * V, 1e-6, &worst);
    cr_assert(e <= 2e-6, "logits: normalised error %.3g at %zu", e, worst);
    cr_assert_eq(loco_model_backward(m, &err), LOCO_OK, "%s", err.msg);
    const loco_tensor_table *t = loco_model_tensors(m);
    double floor = 1e-3 * max_abs_f(grads, n), max_e = 0.0;
    for (int i = 0; i < t->count; i++) {
        const loco_tensor *ti = &t->tensors[i];
        e = norm_err_ff(loco_model_grads(m) + ti->offset, grads + ti->offset, ti->numel, floor,
                        &worst);
        max_e = e > max_e ? e : max_e;
        cr_assert(e <= 1e-4, "gradient of %s: normalised error %.3g at %zu (%g vs torch %g)",
                  ti->name, e, worst, (double)loco_model_grads(m)[ti->offset + worst],
                  (double)grads[ti->offset + worst]);
    }
    cr_log_info("largest per-tensor gradient error vs torch: %.3g", max_e);
    free(tokens);
    free(targets);
    free(logits);
    free(grads);
    free(data);
    loco_model_free(m);
}
