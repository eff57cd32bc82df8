/* tests/test_checkpoint.c — src/checkpoint.h: weights and training-state round trips (bit
 * exact), resume == uninterrupted training bit for bit, refusal of corrupt, truncated and
 * mismatched files (with the file and problem named, and nothing overwritten), and an independent
 * safetensors reader (tests/golden/check_safetensors.py) accepting what loco writes. */
#include "src/checkpoint.h"
#include "tests/model_testutil.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static void make_dir(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/loco_ckpt_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(checkpoint, .init = make_dir, .fini = remove_dir);

static const char *path_in_dir(const char *name)
{
    static char paths[4][192];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 192, "%s/%s", g_dir, name);
    return p;
}

static loco_model *tiny_model(int n_kv_head, int share, uint64_t seed)
{
    loco_model_config cfg;
    tiny_config(&cfg, 2, n_kv_head, share);
    loco_model *m = NULL;
    cr_assert_eq(loco_model_init(&m, &cfg, 2, 16, NULL), LOCO_OK);
    random_params(loco_model_tensors(m), loco_model_params(m), seed);
    return m;
}

static void read_file(const char *path, char **data, size_t *len)
{
    cr_assert_eq(loco_file_read_all(path, 1 << 26, data, len, NULL), LOCO_OK);
}

static void write_file(const char *path, const char *data, size_t len)
{
    cr_assert_eq(loco_file_write_atomic(path, data, len, NULL), LOCO_OK);
}

Test(checkpoint, weights_round_trip_bit_exact_with_config_and_meta)
{
    loco_model *a = tiny_model(2, 2, 1), *b = tiny_model(2, 2, 2);
    const char *path = path_in_dir("model.safetensors");
    loco_error err = {0};
    const char *meta = "{\"step\": 12, \"note\": \"caf\\u00e9 \\\"quoted\\\"\"}";
    cr_assert_eq(loco_checkpoint_save_weights(path, loco_model_get_config(a), loco_model_tensors(a),
                                              loco_model_params(a), meta, &err),
                 LOCO_OK, "%s", err.msg);
    loco_model_config cfg;
    cr_assert_eq(loco_checkpoint_read_config(path, &cfg, &err), LOCO_OK, "%s", err.msg);
    const loco_model_config *want = loco_model_get_config(a);
    cr_assert(cfg.n_layer == want->n_layer && cfg.n_embd == want->n_embd &&
              cfg.n_kv_head == want->n_kv_head && cfg.kv_src[1] == 0 && cfg.vocab == 64 &&
              cfg.init_std == want->init_std);
    char *meta_back = NULL;
    cr_assert_eq(loco_checkpoint_load_weights(path, &cfg, loco_model_tensors(b),
                                              loco_model_params(b), &meta_back, &err),
                 LOCO_OK, "%s", err.msg);
    cr_assert_arr_eq(loco_model_params(a), loco_model_params(b),
                     loco_model_num_params(a) * sizeof(float));
    cr_assert_str_eq(meta_back, meta);
    free(meta_back);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size % 4, 0, "data section is 8-byte aligned, so the size is 4-aligned");
    loco_model_free(a);
    loco_model_free(b);
}

/* Train `steps` AdamW steps from the current state; batches depend only on the step number. */
static void train(loco_model *m, loco_optim *opt, int first, int last)
{
    for (int s = first; s < last; s++) {
        uint16_t tokens[2 * 16], targets[2 * 16];
        random_tokens(tokens, 32, 64, 1000 + s);
        random_tokens(targets, 32, 64, 2000 + s);
        float loss;
        loco_model_zero_grad(m);
        cr_assert_eq(loco_model_forward(m, tokens, targets, 2, 16, &loss, NULL), LOCO_OK);
        cr_assert_eq(loco_model_backward(m, NULL), LOCO_OK);
        cr_assert_eq(loco_grad_clip(loco_model_grads(m), loco_model_num_params(m),
                                    opt->params.grad_clip, NULL, NULL),
                     LOCO_OK);
        float lr = loco_optim_lr(&opt->params, opt->step);
        cr_assert_eq(loco_optim_step(opt, loco_model_params(m), loco_model_grads(m), lr,
                                     loco_model_tensors(m), NULL),
                     LOCO_OK);
    }
}

Test(checkpoint, resume_is_bit_identical_to_an_uninterrupted_run)
{
    loco_optim_params p;
    loco_optim_params_default(&p);
    p.lr = 3e-3f;
    p.warmup_steps = 2;
    p.total_steps = 8;
    p.grad_clip = 0.5f;
    loco_model *full = tiny_model(2, 2, 3), *first = tiny_model(2, 2, 3);
    size_t n = loco_model_num_params(full);
    loco_optim o_full, o_first, o_resumed;
    cr_assert_eq(loco_optim_init(&o_full, &p, n, NULL), LOCO_OK);
    cr_assert_eq(loco_optim_init(&o_first, &p, n, NULL), LOCO_OK);
    cr_assert_eq(loco_optim_init(&o_resumed, &p, n, NULL), LOCO_OK);
    train(full, &o_full, 0, 8);

    train(first, &o_first, 0, 5);
    const char *wpath = path_in_dir("w.safetensors"), *spath = path_in_dir("s.safetensors");
    loco_error err = {0};
    cr_assert_eq(loco_checkpoint_save_weights(wpath, loco_model_get_config(first),
                                              loco_model_tensors(first), loco_model_params(first),
                                              NULL, &err),
                 LOCO_OK, "%s", err.msg);
    cr_assert_eq(loco_checkpoint_save_state(spath, loco_model_tensors(first),
                                            loco_model_params(first), &o_first,
                                            "{\"step\":5,\"rng\":[1,2]}", &err),
                 LOCO_OK, "%s", err.msg);
    loco_model_free(first);

    loco_model *resumed = tiny_model(2, 2, 99); /* different weights until loaded */
    char *state = NULL;
    cr_assert_eq(loco_checkpoint_load_weights(wpath, loco_model_get_config(resumed),
                                              loco_model_tensors(resumed),
                                              loco_model_params(resumed), NULL, &err),
                 LOCO_OK, "%s", err.msg);
    cr_assert_eq(loco_checkpoint_load_state(spath, loco_model_tensors(resumed),
                                            loco_model_params(resumed), &o_resumed, &state, &err),
                 LOCO_OK, "%s", err.msg);
    cr_assert_str_eq(state, "{\"step\":5,\"rng\":[1,2]}");
    cr_assert_eq(o_resumed.step, 5);
    free(state);
    train(resumed, &o_resumed, 5, 8);
    cr_assert_arr_eq(loco_model_params(full), loco_model_params(resumed), n * sizeof(float),
                     "resumed parameters differ from the uninterrupted run");
    cr_assert_arr_eq(o_full.state, o_resumed.state, 2 * n * sizeof(float),
                     "resumed optimizer state differs");
    loco_optim_free(&o_full);
    loco_optim_free(&o_first);
    loco_optim_free(&o_resumed);
    loco_model_free(full);
    loco_model_free(resumed);
}

/* Expect `path` to be refused with `status` and a message containing `needle` and the path, and
 * the target parameters untouched. */
static void expect_refused(const char *path, loco_model *m, loco_status status, const char *needle)
{
    size_t n = loco_model_num_params(m);
    float *before = malloc(n * sizeof(float));
    memcpy(before, loco_model_params(m), n * sizeof(float));
    loco_error err = {0};
    loco_status got = loco_checkpoint_load_weights(
        path, loco_model_get_config(m), loco_model_tensors(m), loco_model_params(m), NULL, &err);
    cr_assert_eq(got, status, "%s: status %s (%s), want %s", path, loco_status_str(got), err.msg,
                 loco_status_str(status));
    cr_assert(NULL != strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg, needle);
    cr_assert(NULL != strstr(err.msg, path), "message '%s' does not name the file", err.msg);
    cr_assert_arr_eq(before, loco_model_params(m), n * sizeof(float), "refusal changed params");
    free(before);
}

Test(checkpoint, corrupt_and_truncated_files_are_refused)
{
    loco_model *m = tiny_model(4, 1, 4);
    const char *path = path_in_dir("good.safetensors");
    cr_assert_eq(loco_checkpoint_save_weights(path, loco_model_get_config(m), loco_model_tensors(m),
                                              loco_model_params(m), NULL, NULL),
                 LOCO_OK);
    char *data;
    size_t len;
    read_file(path, &data, &len);
    uint64_t header_len;
    memcpy(&header_len, data, 8);
    const char *bad = path_in_dir("bad.safetensors");

    data[len - 100] ^= 0x10; /* one flipped bit in the weights */
    write_file(bad, data, len);
    expect_refused(bad, m, LOCO_ERR_CHECKSUM, "corrupt");
    data[len - 100] ^= 0x10;

    size_t cuts[] = {0, 5, 8 + header_len / 2, 8 + header_len + 7, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_file(bad, data, cuts[i]);
        expect_refused(bad, m, LOCO_ERR_TRUNCATED, "truncated");
    }
    data[8] = '['; /* the header's opening brace */
    write_file(bad, data, len);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "not valid JSON");
    data[8] = '{';
    memcpy(data, &(uint64_t){1ull << 40}, 8);
    write_file(bad, data, len);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "header length");
    expect_refused(path_in_dir("missing.safetensors"), m, LOCO_ERR_NOT_FOUND, "cannot open");
    free(data);
    loco_model_free(m);
}

/* A hand-made safetensors file: header text + data_len zero bytes. */
static void write_raw(const char *path, const char *header, size_t data_len)
{
    size_t hl = strlen(header), len = 8 + hl + data_len;
    char *buf = calloc(len, 1);
    uint64_t h = hl;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, header, hl);
    write_file(path, buf, len);
    free(buf);
}

Test(checkpoint, malformed_headers_are_refused)
{
    loco_model *m = tiny_model(4, 1, 5);
    const char *bad = path_in_dir("hostile.safetensors");
    write_raw(bad, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "need");
    write_raw(bad, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "holes");
    write_raw(bad, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "after the last tensor");
    write_raw(bad,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
              8);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "twice");
    write_raw(bad, "{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "dtype");
    write_raw(bad, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "dimension 0");
    write_raw(bad, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "at most 4");
    write_raw(bad,
              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4,4611686018427387904],"
              "\"data_offsets\":[0,4]}}",
              4);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "dimension 1");
    write_raw(bad, "{\"__metadata__\":{\"format\":7}}", 0);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "not a string");
    write_raw(bad, "{\"wte\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_refused(bad, m, LOCO_ERR_FORMAT, "BF16");
    write_raw(bad, "{}", 0); /* a valid, empty file: missing tensors */
    expect_refused(bad, m, LOCO_ERR_FORMAT, "has no tensor 'wte'");
    loco_model_free(m);
}

Test(checkpoint, another_model_shape_is_refused_by_name)
{
    loco_model *mha = tiny_model(4, 1, 6), *shared = tiny_model(4, 2, 7),
               *gqa = tiny_model(2, 1, 8);
    const char *path = path_in_dir("mha.safetensors");
    cr_assert_eq(loco_checkpoint_save_weights(path, loco_model_get_config(mha),
                                              loco_model_tensors(mha), loco_model_params(mha), NULL,
                                              NULL),
                 LOCO_OK);
    expect_refused(path, shared, LOCO_ERR_FORMAT, "model.kv_src[1] = 1");
    expect_refused(path, gqa, LOCO_ERR_FORMAT, "model.n_kv_head = 4");
    /* without a config to compare, the tensors themselves are checked */
    loco_error err = {0};
    cr_assert_eq(loco_checkpoint_load_weights(path, NULL, loco_model_tensors(gqa),
                                              loco_model_params(gqa), NULL, &err),
                 LOCO_ERR_FORMAT);
    cr_assert(NULL != strstr(err.msg, "h.0.attn.k.weight' has shape [64, 64], the model expects "
                                      "[32, 64]"),
              "%s", err.msg);
    loco_error_clear(&err);
    cr_assert_eq(loco_checkpoint_load_weights(path, NULL, loco_model_tensors(shared),
                                              loco_model_params(shared), NULL, &err),
                 LOCO_ERR_FORMAT);
    cr_assert(NULL != strstr(err.msg, "holds tensor 'h.1.attn.k.weight' that this model does not"),
              "%s", err.msg);
    loco_model_free(mha);
    loco_model_free(shared);
    loco_model_free(gqa);
}

Test(checkpoint, state_refuses_other_weights_kind_and_files)
{
    loco_model *m = tiny_model(4, 1, 9);
    size_t n = loco_model_num_params(m);
    loco_optim_params p;
    loco_optim_params_default(&p);
    loco_optim adam, adam2, sgd;
    cr_assert_eq(loco_optim_init(&adam, &p, n, NULL), LOCO_OK);
    cr_assert_eq(loco_optim_init(&adam2, &p, n, NULL), LOCO_OK);
    p.kind = LOCO_OPTIM_SGD;
    cr_assert_eq(loco_optim_init(&sgd, &p, n, NULL), LOCO_OK);
    for (size_t i = 0; i < 2 * n; i++) {
        adam.state[i] = (float)i * 1e-3f;
    }
    adam.step = 42;
    const char *spath = path_in_dir("state.safetensors"), *wpath = path_in_dir("w.safetensors");
    loco_error err = {0};
    cr_assert_eq(loco_checkpoint_save_state(spath, loco_model_tensors(m), loco_model_params(m),
                                            &adam, NULL, &err),
                 LOCO_OK, "%s", err.msg);
    char *json = (char *)"unchanged";
    cr_assert_eq(loco_checkpoint_load_state(spath, loco_model_tensors(m), loco_model_params(m),
                                            &adam2, &json, &err),
                 LOCO_OK, "%s", err.msg);
    cr_assert_null(json);
    cr_assert_eq(adam2.step, 42);
    cr_assert_arr_eq(adam.state, adam2.state, 2 * n * sizeof(float));

    cr_assert_eq(loco_checkpoint_load_state(spath, loco_model_tensors(m), loco_model_params(m),
                                            &sgd, NULL, &err),
                 LOCO_ERR_FORMAT);
    cr_assert(NULL != strstr(err.msg, "adamw") && NULL != strstr(err.msg, "sgd"), "%s", err.msg);
    loco_model_params(m)[3] += 1.0f; /* other weights */
    loco_error_clear(&err);
    loco_optim_reset(&adam2);
    cr_assert_eq(loco_checkpoint_load_state(spath, loco_model_tensors(m), loco_model_params(m),
                                            &adam2, NULL, &err),
                 LOCO_ERR_CHECKSUM);
    cr_assert(NULL != strstr(err.msg, "other weights"), "%s", err.msg);
    cr_assert_eq(adam2.step, 0, "refusal left the optimizer alone");
    /* a state file is not weights, and weights are not a state file */
    expect_refused(spath, m, LOCO_ERR_FORMAT, "loco-train-state");
    cr_assert_eq(loco_checkpoint_save_weights(wpath, loco_model_get_config(m),
                                              loco_model_tensors(m), loco_model_params(m), NULL,
                                              NULL),
                 LOCO_OK);
    loco_error_clear(&err);
    cr_assert_eq(loco_checkpoint_load_state(wpath, loco_model_tensors(m), loco_model_params(m),
                                            &adam2, NULL, &err),
                 LOCO_ERR_FORMAT);
    cr_assert(NULL != strstr(err.msg, "loco-weights"), "%s", err.msg);
    loco_optim_free(&adam);
    loco_optim_free(&adam2);
    loco_optim_free(&sgd);
    loco_model_free(m);
}

Test(checkpoint, an_independent_reader_accepts_the_file)
{
    if (0 != system("python3 -c 'import json, struct' > /dev/null 2>&1")) {
        cr_skip_test("python3 is not available");
    }
    loco_model *m = tiny_model(2, 2, 10);
    const char *path = path_in_dir("model.safetensors"), *expect = path_in_dir("expect.json");
    cr_assert_eq(loco_checkpoint_save_weights(path, loco_model_get_config(m), loco_model_tensors(m),
                                              loco_model_params(m), "{\"step\":3}", NULL),
                 LOCO_OK);
    /* expectations: per tensor shape, first and last value and the double sum */
    FILE *fp = fopen(expect, "w");
    cr_assert_not_null(fp);
    loco_json_writer w;
    loco_json_writer_init(&w, fp, false);
    loco_json_begin_object(&w);
    const loco_tensor_table *t = loco_model_tensors(m);
    for (int i = 0; i < t->count; i++) {
        const float *v = loco_model_params(m) + t->tensors[i].offset;
        double sum = 0.0;
        for (size_t j = 0; j < t->tensors[i].numel; j++) {
            sum += v[j];
        }
        loco_json_key(&w, t->tensors[i].name);
        loco_json_begin_object(&w);
        loco_json_key(&w, "shape");
        loco_json_begin_array(&w);
        for (int d = 0; d < t->tensors[i].ndim; d++) {
            loco_json_int(&w, t->tensors[i].shape[d]);
        }
        loco_json_end_array(&w);
        loco_json_key(&w, "first");
        loco_json_number(&w, v[0]);
        loco_json_key(&w, "last");
        loco_json_number(&w, v[t->tensors[i].numel - 1]);
        loco_json_key(&w, "sum");
        loco_json_number(&w, sum);
        loco_json_end_object(&w);
    }
    loco_json_end_object(&w);
    cr_assert_eq(fclose(fp), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "python3 %s/tests/golden/check_safetensors.py %s %s", LOCO_SRC_DIR,
             path, expect);
    cr_assert_eq(system(cmd), 0, "the independent reader refused %s", path);
    loco_model_free(m);
}
