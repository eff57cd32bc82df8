/* tests/test_base.c — base/: Philox and ARS known answers, XXH64 vectors, bf16/fp16, JSON,
 * tensor table, atomic files. */
#include "base/base.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Random123's kat_vectors, "philox4x32 10" lines: counter[4], key[2] -> output[4]. */
Test(rng, philox_known_answers)
{
    static const uint32_t cases[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
         0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
         0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int c = 0; c < 3; c++) {
        uint32_t out[4];
        loco_philox4x32_10(&cases[c][0], &cases[c][4], out);
        for (int i = 0; i < 4; i++) {
            cr_expect_eq(out[i], cases[c][6 + i], "case %d word %d: got %08x want %08x", c, i,
                         out[i], cases[c][6 + i]);
        }
    }
}

Test(rng, block_layout_matches_raw_philox)
{
    uint32_t a[4], b[4];
    uint64_t seed = 0x299f31d0a4093822ull, stream = 0x0370734413198a2eull,
             counter = 0x85a308d3243f6a88ull;
    loco_rng_block(seed, stream, counter, a);
    const uint32_t ctr[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
    const uint32_t key[2] = {0xa4093822, 0x299f31d0};
    loco_philox4x32_10(ctr, key, b);
    cr_assert_arr_eq(a, b, sizeof a);
}

/* Random123's kat_vectors, "ars4x32 10" lines: counter[4], key[4] -> output[4]. The portable
 * AES round must give them (the AES-NI draws of compress/ are checked against it). */
Test(rng, ars_known_answers)
{
    static const uint32_t cases[3][12] = {
        {0, 0, 0, 0, 0, 0, 0, 0, 0x8d73ee19, 0x506401ef, 0x13c2dbe4, 0x0cbe9c0d},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0x082efa98,
         0xec4e6c89, 0xa516e7d6, 0x8357ad74, 0x5b59b3ec, 0x8763fff3},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0, 0,
         0xbb3743b1, 0x9f635551, 0xecbc87fc, 0xa19478a9},
    };
    for (int c = 0; c < 3; c++) {
        uint32_t out[4];
        loco_ars4x32(&cases[c][0], &cases[c][4], 10, out);
        for (int i = 0; i < 4; i++) {
            cr_expect_eq(out[i], cases[c][8 + i], "case %d word %d: got %08x want %08x", c, i,
                         out[i], cases[c][8 + i]);
        }
    }
}

Test(rng, ars_block_layout_matches_raw_ars7)
{
    uint32_t a[4], b[4];
    uint64_t seed = 0x299f31d0a4093822ull, stream = 0x0370734413198a2eull,
             counter = 0x85a308d3243f6a88ull;
    loco_rng_ars_block(seed, stream, counter, a);
    const uint32_t ctr[4] = {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344};
    const uint32_t key[4] = {0xa4093822, 0x299f31d0, 0, 0};
    loco_ars4x32(ctr, key, 7, b);
    cr_assert_arr_eq(a, b, sizeof a);
    loco_ars4x32(ctr, key, 10, b); /* the round count matters */
    cr_assert(0 != memcmp(a, b, sizeof a));
}

Test(rng, sequential_generator_is_reproducible_and_uniform)
{
    loco_rng r1, r2;
    loco_rng_init(&r1, 42, 7);
    loco_rng_init(&r2, 42, 7);
    double sum = 0, sumsq = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        float u = loco_rng_uniform(&r1);
        cr_assert_eq(loco_f32_bits(u), loco_f32_bits(loco_rng_uniform(&r2)));
        cr_assert(u >= 0.0f && u < 1.0f);
        sum += u;
        sumsq += (double)u * u;
    }
    double mean = sum / n, var = sumsq / n - mean * mean;
    cr_expect(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / n), "mean %f", mean);
    cr_expect(fabs(var - 1.0 / 12) < 0.002, "variance %f", var);
    /* a different stream gives different numbers */
    loco_rng r3;
    loco_rng_init(&r3, 42, 8);
    loco_rng_init(&r1, 42, 7);
    int same = 0;
    for (int i = 0; i < 64; i++) {
        same += loco_rng_u32(&r1) == loco_rng_u32(&r3);
    }
    cr_expect_lt(same, 2);
}

Test(rng, normal_and_below)
{
    loco_rng r;
    loco_rng_init(&r, 1, 2);
    double sum = 0, sumsq = 0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double z = loco_rng_normal(&r);
        sum += z;
        sumsq += z * z;
    }
    cr_expect(fabs(sum / n) < 0.02, "normal mean %f", sum / n);
    cr_expect(fabs(sumsq / n - 1.0) < 0.03, "normal variance %f", sumsq / n);
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t v = loco_rng_below(&r, 7);
        cr_assert_lt(v, 7u);
        counts[v]++;
    }
    for (int k = 0; k < 7; k++) {
        cr_expect(abs(counts[k] - 10000) < 500, "bucket %d has %d", k, counts[k]);
    }
}

/* Reference values from xxhsum -H1 (the xxhash package). */
Test(hash, xxh64_reference_vectors)
{
    cr_expect_eq(loco_hash64("", 0, 0), 0xef46db3751d8e999ull);
    cr_expect_eq(loco_hash64("a", 1, 0), 0xd24ec4f1a98c6e5bull);
    cr_expect_eq(loco_hash64("abc", 3, 0), 0x44bc2cf5ad770999ull);
    char zeros[100] = {0};
    cr_expect_eq(loco_hash64(zeros, 100, 0), 0x17bb1103c92c502full);
    char digits[101];
    for (int i = 0; i < 100; i++) {
        digits[i] = (char)('0' + i % 10);
    }
    cr_expect_eq(loco_hash64(digits, 100, 0), 0xf80e7b96315afffaull);
}

Test(hash, incremental_equals_one_shot_for_every_split)
{
    unsigned char data[300];
    for (int i = 0; i < 300; i++) {
        data[i] = (unsigned char)(i * 31 + 7);
    }
    for (size_t len = 0; len <= 300; len += 13) {
        uint64_t want = loco_hash64(data, len, 99);
        for (size_t split = 0; split <= len; split += 5) {
            loco_hasher h;
            loco_hasher_init(&h, 99);
            loco_hasher_update(&h, data, split);
            loco_hasher_update(&h, data + split, len - split);
            cr_assert_eq(loco_hasher_final(&h), want, "len %zu split %zu", len, split);
        }
    }
}

Test(half, bf16_round_to_nearest_even)
{
    cr_expect_eq(loco_f32_to_bf16(1.0f), 0x3f80);
    /* 1 + 2^-8 is halfway between bf16 1.0 and 1+2^-7: ties to even -> 1.0 */
    cr_expect_eq(loco_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
    cr_expect_eq(loco_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
    cr_expect(isnan(loco_bf16_to_f32(loco_f32_to_bf16(NAN))));
    cr_expect(isinf(loco_bf16_to_f32(loco_f32_to_bf16(INFINITY))));
    for (float x = -3.0f; x < 3.0f; x += 0.0173f) {
        float y = loco_bf16_to_f32(loco_f32_to_bf16(x));
        cr_assert(fabsf(y - x) <= fabsf(x) * (1.0f / 256) + 1e-30f, "%g -> %g", x, y);
    }
}

Test(half, fp16_exhaustive_round_trip)
{
    /* Every finite fp16 converts to fp32 and back unchanged. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint16_t v = (uint16_t)h;
        if ((v & 0x7C00) == 0x7C00) {
            continue;
        }
        cr_assert_eq(loco_f32_to_f16(loco_f16_to_f32(v)), v, "fp16 %04x", v);
    }
    cr_expect_eq(loco_f32_to_f16(65520.0f), 0x7C00); /* rounds to Inf */
    cr_expect_eq(loco_f32_to_f16(65504.0f), 0x7BFF);
    cr_expect_eq(loco_f32_to_f16(1.0f + 1.0f / 2048), 0x3C00); /* tie to even */
    cr_expect_eq(loco_f32_to_f16(5.9604645e-8f), 0x0001);      /* smallest subnormal */
}

Test(json, writer_then_reader_round_trip)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    loco_json_writer w;
    loco_json_writer_init(&w, mem, false);
    loco_json_begin_object(&w);
    loco_json_key(&w, "step");
    loco_json_int(&w, 12);
    loco_json_key(&w, "loss");
    loco_json_number(&w, 2.5);
    loco_json_key(&w, "bad");
    loco_json_number(&w, NAN);
    loco_json_key(&w, "name");
    loco_json_string(&w, "a \"quoted\"\nline");
    loco_json_key(&w, "list");
    loco_json_begin_array(&w);
    loco_json_int(&w, 1);
    loco_json_bool(&w, true);
    loco_json_null(&w);
    loco_json_end_array(&w);
    loco_json_end_object(&w);
    fclose(mem);
    cr_assert_str_eq(text, "{\"step\":12,\"loss\":2.5,\"bad\":null,\"name\":\"a \\\"quoted\\\"\\nline\","
                           "\"list\":[1,true,null]}");
    loco_json_doc doc;
    loco_error err = {0};
    cr_assert_eq(loco_json_parse(&doc, text, len, NULL, &err), LOCO_OK, "%s", err.msg);
    const loco_json_node *root = loco_json_root(&doc);
    cr_assert_eq(loco_json_get(&doc, root, "step")->integer, 12);
    cr_assert(loco_json_get(&doc, root, "step")->is_integer);
    cr_assert_float_eq(loco_json_get(&doc, root, "loss")->number, 2.5, 0);
    cr_assert_str_eq(loco_json_get(&doc, root, "name")->str, "a \"quoted\"\nline");
    const loco_json_node *list = loco_json_get(&doc, root, "list");
    cr_assert_eq(list->count, 3);
    cr_assert_eq(loco_json_next(&doc, loco_json_child(&doc, list))->type, LOCO_JSON_BOOL);
    cr_assert_null(loco_json_get(&doc, root, "missing"));
    loco_json_free(&doc);
    free(text);
}

Test(json, unicode_escapes)
{
    const char *text = "[\"\\u00e9\\ud83d\\ude00\"]";
    loco_json_doc doc;
    cr_assert_eq(loco_json_parse(&doc, text, strlen(text), NULL, NULL), LOCO_OK);
    cr_assert_str_eq(loco_json_child(&doc, loco_json_root(&doc))->str, "\xc3\xa9\xf0\x9f\x98\x80");
    loco_json_free(&doc);
}

Test(json, rejects_malformed_and_hostile_input)
{
    const char *bad[] = {"",       "{",         "[1,]",       "{\"a\" 1}", "\"abc",
                         "[1 2]",  "tru",       "01",         "1.",       "{\"a\":1}x",
                         "[\"\\x\"]", "[\"\\ud800\"]", "[\"\\u0000\"]", "-",      "{1:2}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        loco_json_doc doc;
        loco_error err = {0};
        cr_expect_eq(loco_json_parse(&doc, bad[i], strlen(bad[i]), NULL, &err), LOCO_ERR_FORMAT,
                     "accepted '%s'", bad[i]);
        cr_expect(strstr(err.msg, "at byte") != NULL, "message '%s'", err.msg);
    }
    /* 100k nested arrays: refused by the depth limit, no stack overflow. */
    size_t n = 100000;
    char *deep = malloc(2 * n);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    loco_json_doc doc;
    loco_error err = {0};
    cr_assert_eq(loco_json_parse(&doc, deep, 2 * n, NULL, &err), LOCO_ERR_FORMAT);
    cr_assert(strstr(err.msg, "nesting too deep") != NULL, "%s", err.msg);
    free(deep);
    /* node limit */
    const char *many = "[1,2,3,4,5,6,7,8,9]";
    loco_json_limits lim = {.max_depth = 8, .max_nodes = 5};
    cr_assert_eq(loco_json_parse(&doc, many, strlen(many), &lim, NULL), LOCO_ERR_FORMAT);
}

Test(tensor, table_offsets_and_validation)
{
    loco_tensor_table t;
    cr_assert_eq(loco_tensor_table_init(&t, 3), LOCO_OK);
    int64_t a[2] = {4, 8}, b[1] = {8}, c[3] = {2, 3, 5};
    loco_tensor_table_add(&t, "wte", -1, 2, a);
    loco_tensor_table_add(&t, "h.0.ln.weight", 0, 1, b);
    loco_tensor_table_add(&t, "h.0.x", 0, 3, c);
    cr_assert_eq(t.numel, 32u + 8u + 30u);
    cr_assert_eq(t.tensors[2].offset, 40u);
    cr_assert_eq(loco_tensor_table_find(&t, "h.0.ln.weight"), 1);
    cr_assert_eq(loco_tensor_table_find(&t, "nope"), -1);
    cr_assert_eq(loco_tensor_table_validate(&t, NULL), LOCO_OK);
    t.tensors[1].offset = 33;
    loco_error err = {0};
    cr_assert_eq(loco_tensor_table_validate(&t, &err), LOCO_ERR_FORMAT);
    cr_assert(strstr(err.msg, "h.0.ln.weight") != NULL, "%s", err.msg);
    loco_tensor_table_free(&t);
}

Test(fileio, atomic_write_and_abort_leave_no_partial_file)
{
    char dir[] = "/tmp/loco_test_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/sub/dir/file.bin", dir);
    char sub[256];
    snprintf(sub, sizeof sub, "%s/sub/dir", dir);
    cr_assert_eq(loco_mkdir_p(sub, NULL), LOCO_OK);
    cr_assert_eq(loco_file_write_atomic(path, "hello", 5, NULL), LOCO_OK);
    loco_atomic_file af;
    cr_assert_eq(loco_atomic_open(&af, path, NULL), LOCO_OK);
    fputs("partial", af.fp);
    loco_atomic_abort(&af);
    char *data;
    size_t len;
    cr_assert_eq(loco_file_read_all(path, 1 << 20, &data, &len, NULL), LOCO_OK);
    cr_assert_eq(len, 5u);
    cr_assert_str_eq(data, "hello");
    free(data);
    cr_assert_neq(access(af.tmp_path, F_OK), 0, "temporary file left behind");
    loco_error err = {0};
    cr_assert_eq(loco_file_read_all(path, 3, &data, &len, &err), LOCO_ERR_RANGE);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none", dir);
    cr_assert_eq(loco_file_read_all(missing, 10, &data, &len, NULL), LOCO_ERR_NOT_FOUND);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(status, error_keeps_first_message_and_exit_codes)
{
    loco_error err = {0};
    cr_assert_eq(loco_error_set(&err, LOCO_ERR_FORMAT, "first %d", 1), LOCO_ERR_FORMAT);
    loco_error_set(&err, LOCO_ERR_IO, "second");
    cr_assert_str_eq(err.msg, "first 1");
    cr_assert_eq(err.status, LOCO_ERR_FORMAT);
    cr_assert_eq(loco_status_exit_code(LOCO_OK), 0);
    cr_assert_eq(loco_status_exit_code(LOCO_ERR_CONFIG), 2);
    cr_assert_eq(loco_status_exit_code(LOCO_ERR_USAGE), 2);
    cr_assert_eq(loco_status_exit_code(LOCO_ERR_PEER_LOST), 1);
    for (int s = LOCO_ERR_INTERNAL; s <= 0; s++) {
        cr_assert_str_neq(loco_status_str((loco_status)s), "unknown status");
    }
}
