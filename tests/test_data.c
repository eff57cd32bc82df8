/* tests/test_data.c — token files and loaders: text -> shards -> text round trip (plain and
 * gzip), validation split at line starts, IID sharding covers every token exactly once, source
 * partitions are whole sources, corrupt / truncated / wrong-version files are refused, loader
 * state resumes exactly, and the CLI leaves nothing behind on failure. */
#include "src/data.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[64];

static void make_dir(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/loco_data_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    cr_assert_eq(system(cmd), 0);
}

/* A text of `lines` numbered lines, distinct per source. */
static char *make_text(const char *tag, int lines, size_t *len)
{
    size_t cap = (size_t)lines * 64 + 1;
    char *text = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < lines; i++) {
        n += (size_t)snprintf(text + n, cap - n, "%s line %d: the quick brown fox %d\n", tag, i,
                              i * 7);
    }
    *len = n;
    return text;
}

static void write_plain(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    cr_assert_eq(fwrite(text, 1, len, fp), len);
    fclose(fp);
}

static void write_gzip(const char *path, const char *text, size_t len)
{
    gzFile gz = gzopen(path, "wb");
    cr_assert_not_null(gz);
    cr_assert_eq(gzwrite(gz, text, (unsigned)len), (int)len);
    gzclose(gz);
}

/* Prepare a dataset from three sources (one gzip'd) in g_dir/src; output in g_dir/out. */
static void prepare_three(char *texts[3], size_t lens[3])
{
    char src[128], path[256], out[128];
    snprintf(src, sizeof src, "%s/src", g_dir);
    cr_assert_eq(mkdir(src, 0755), 0);
    const char *tags[3] = {"alpha", "beta", "gamma"};
    int lines[3] = {400, 150, 900};
    for (int s = 0; s < 3; s++) {
        texts[s] = make_text(tags[s], lines[s], &lens[s]);
        snprintf(path, sizeof path, "%s/%c_%s%s", src, 'a' + s, tags[s], 1 == s ? ".gz" : "");
        if (1 == s) {
            write_gzip(path, texts[s], lens[s]);
        } else {
            write_plain(path, texts[s], lens[s]);
        }
    }
    snprintf(path, sizeof path, "%s/a_alpha.dat", src); /* fortune index: skipped */
    write_plain(path, "junk", 4);
    snprintf(out, sizeof out, "%s/out", g_dir);
    const char *inputs[1] = {src};
    loco_prepare_params params = {.inputs = inputs, .n_inputs = 1, .out_dir = out,
                                  .val_fraction = 0.1};
    loco_error err = {0};
    cr_assert_eq(loco_data_prepare(&params, &err), LOCO_OK, "%s", err.msg);
}

static void open_split(loco_token_file *file, const char *split)
{
    char path[256];
    snprintf(path, sizeof path, "%s/out/%s.tok", g_dir, split);
    loco_error err = {0};
    cr_assert_eq(loco_token_file_open(file, path, &err), LOCO_OK, "%s", err.msg);
}

Test(data, text_to_shards_to_text_round_trip, .init = make_dir, .fini = remove_dir)
{
    char *texts[3];
    size_t lens[3];
    prepare_three(texts, lens);
    loco_token_file train, val;
    open_split(&train, "train");
    open_split(&val, "val");
    cr_assert_eq(train.source_count, 3u);
    cr_assert_eq(val.source_count, 3u);
    cr_assert_eq(train.vocab, 256u);
    for (int s = 0; s < 3; s++) {
        const loco_data_source *ts = &train.sources[s], *vs = &val.sources[s];
        cr_assert_eq(ts->count + vs->count, lens[s], "source %d length", s);
        cr_assert_gt(vs->count, 0u);
        /* the held-out tail is about 10% and starts at a line start */
        cr_expect(vs->count < lens[s] / 8 && vs->count > lens[s] / 14, "source %d val %llu of %zu",
                  s, (unsigned long long)vs->count, lens[s]);
        cr_assert_eq(train.tokens[ts->first + ts->count - 1], '\n');
        for (uint64_t i = 0; i < ts->count; i++) {
            cr_assert_eq(train.tokens[ts->first + i], (uint8_t)texts[s][i]);
        }
        for (uint64_t i = 0; i < vs->count; i++) {
            cr_assert_eq(val.tokens[vs->first + i], (uint8_t)texts[s][ts->count + i]);
        }
        free(texts[s]);
    }
    cr_assert_str_eq(train.sources[1].name, "b_beta.gz");
    loco_token_file_close(&train);
    loco_token_file_close(&val);
}

Test(data, iid_sharding_covers_every_token_exactly_once, .init = make_dir, .fini = remove_dir)
{
    char *texts[3];
    size_t lens[3];
    prepare_three(texts, lens);
    loco_token_file train;
    open_split(&train, "train");
    uint8_t *seen = calloc(train.count, 1);
    int blocks[] = {1, 7, 1000, 100000};
    for (int bi = 0; bi < 4; bi++) {
        for (int world = 1; world <= 5; world++) {
            memset(seen, 0, train.count);
            for (int rank = 0; rank < world; rank++) {
                loco_loader loader;
                loco_error err = {0};
                loco_status st = loco_loader_init(&loader, &train, LOCO_PARTITION_IID, blocks[bi],
                                                  rank, world, 2, 16, &err);
                if (LOCO_OK != st) {
                    /* only allowed when blocks are too large for this many workers */
                    cr_assert_eq(st, LOCO_ERR_CONFIG);
                    cr_assert((uint64_t)blocks[bi] * (uint64_t)rank >= train.count - 17, "%s",
                              err.msg);
                    continue;
                }
                for (uint64_t p = 0; p < loader.length; p++) {
                    uint64_t g = loco_loader_file_index(&loader, p);
                    cr_assert_lt(g, train.count);
                    seen[g]++;
                }
                loco_loader_free(&loader);
            }
            for (uint64_t i = 0; i < train.count; i++) {
                if (blocks[bi] * (uint64_t)(world - 1) < train.count - 17) {
                    cr_assert_eq(seen[i], 1, "block %d world %d: token %llu seen %d times",
                                 blocks[bi], world, (unsigned long long)i, seen[i]);
                }
            }
        }
    }
    free(seen);
    for (int s = 0; s < 3; s++) {
        free(texts[s]);
    }
    loco_token_file_close(&train);
}

Test(data, source_partitions_are_whole_sources, .init = make_dir, .fini = remove_dir)
{
    char *texts[3];
    size_t lens[3];
    prepare_three(texts, lens);
    loco_token_file train;
    open_split(&train, "train");
    int owners[3] = {-1, -1, -1};
    for (int rank = 0; rank < 2; rank++) {
        loco_loader loader;
        loco_error err = {0};
        cr_assert_eq(loco_loader_init(&loader, &train, LOCO_PARTITION_SOURCE, 0, rank, 2, 1, 8,
                                      &err),
                     LOCO_OK, "%s", err.msg);
        uint64_t covered = 0;
        for (int r = 0; r < loader.n_ranges; r++) {
            int s = 0;
            while (train.sources[s].first != loader.range_first[r]) {
                s++;
            }
            cr_assert_eq(loader.range_count[r], train.sources[s].count);
            cr_assert_eq(owners[s], -1, "source %d given twice", s);
            owners[s] = rank;
            covered += loader.range_count[r];
        }
        cr_assert_eq(covered, loader.length);
        loco_loader_free(&loader);
    }
    /* largest source (gamma) alone on rank 0; alpha + beta on rank 1 */
    cr_assert_eq(owners[2], 0);
    cr_assert_eq(owners[0], 1);
    cr_assert_eq(owners[1], 1);
    loco_loader loader;
    loco_error err = {0};
    cr_assert_eq(loco_loader_init(&loader, &train, LOCO_PARTITION_SOURCE, 0, 0, 4, 1, 8, &err),
                 LOCO_ERR_CONFIG);
    cr_assert(strstr(err.msg, "4 workers share 3 sources") != NULL, "%s", err.msg);
    for (int s = 0; s < 3; s++) {
        free(texts[s]);
    }
    loco_token_file_close(&train);
}

Test(data, batches_shift_targets_and_state_resumes_exactly, .init = make_dir, .fini = remove_dir)
{
    char *texts[3];
    size_t lens[3];
    prepare_three(texts, lens);
    loco_token_file train;
    open_split(&train, "train");
    const int B = 3, T = 50;
    loco_loader a, b;
    cr_assert_eq(loco_loader_init(&a, &train, LOCO_PARTITION_IID, 64, 1, 2, B, T, NULL), LOCO_OK);
    cr_assert_eq(loco_loader_init(&b, &train, LOCO_PARTITION_IID, 64, 1, 2, B, T, NULL), LOCO_OK);
    uint16_t in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];
    /* run past an epoch boundary */
    int steps = (int)(a.length / (uint64_t)(B * T)) + 3;
    for (int s = 0; s < steps; s++) {
        loco_loader_next(&a, in1, tg1);
        for (int r = 0; r < B; r++) {
            for (int t = 0; t + 1 < T; t++) {
                cr_assert_eq(tg1[r * T + t], in1[r * T + t + 1]);
            }
        }
    }
    cr_assert_eq(a.epoch, 1u);
    loco_loader_state saved = loco_loader_get_state(&a);
    loco_loader_set_state(&b, saved);
    for (int s = 0; s < 5; s++) {
        loco_loader_next(&a, in1, tg1);
        loco_loader_next(&b, in2, tg2);
        cr_assert_arr_eq(in1, in2, sizeof in1);
        cr_assert_arr_eq(tg1, tg2, sizeof tg1);
    }
    loco_loader_free(&a);
    loco_loader_free(&b);
    for (int s = 0; s < 3; s++) {
        free(texts[s]);
    }
    loco_token_file_close(&train);
}

/* loco_loader_seek(n) continues exactly where reading n sequences from the start would, across
 * epoch boundaries (how a worker picks up the group's data position after a membership change). */
Test(data, seek_continues_where_reading_would, .init = make_dir, .fini = remove_dir)
{
    char *texts[3];
    size_t lens[3];
    prepare_three(texts, lens);
    loco_token_file train;
    open_split(&train, "train");
    const int B = 3, T = 50;
    loco_loader a, b;
    cr_assert_eq(loco_loader_init(&a, &train, LOCO_PARTITION_IID, 64, 0, 3, B, T, NULL), LOCO_OK);
    cr_assert_eq(loco_loader_init(&b, &train, LOCO_PARTITION_IID, 64, 0, 3, B, T, NULL), LOCO_OK);
    uint16_t in1[B * T], tg1[B * T], in2[B * T], tg2[B * T];
    int per_epoch = (int)(a.length / (uint64_t)(B * T));
    for (int s = 0; s < 3 * per_epoch + 2; s++) {
        loco_loader_seek(&b, (uint64_t)s * B);
        loco_loader_next(&a, in1, tg1);
        loco_loader_next(&b, in2, tg2);
        cr_assert_arr_eq(in1, in2, sizeof in1, "batch %d", s);
        cr_assert_arr_eq(tg1, tg2, sizeof tg1, "batch %d", s);
        cr_assert_eq(a.epoch, b.epoch, "batch %d: epoch %llu vs %llu", s,
                     (unsigned long long)a.epoch, (unsigned long long)b.epoch);
    }
    cr_assert(a.epoch >= 2);
    loco_loader_free(&a);
    loco_loader_free(&b);
    for (int s = 0; s < 3; s++) {
        free(texts[s]);
    }
    loco_token_file_close(&train);
}

/* Copy train.tok to a scratch file, let `edit` damage it, and check the open fails as told. */
static void expect_refused(void (*edit)(const char *path), loco_status want, const char *needle)
{
    char *texts[3];
    size_t lens[3];
    prepare_three(texts, lens);
    for (int s = 0; s < 3; s++) {
        free(texts[s]);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/out/train.tok", g_dir);
    edit(path);
    loco_token_file file;
    loco_error err = {0};
    cr_assert_eq(loco_token_file_open(&file, path, &err), want, "%s", err.msg);
    cr_assert(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    cr_assert(strstr(err.msg, path) != NULL, "message '%s' does not name the file", err.msg);
}

static void flip_payload_byte(const char *path)
{
    FILE *fp = fopen(path, "r+b");
    fseek(fp, -100, SEEK_END);
    int c = fgetc(fp);
    fseek(fp, -100, SEEK_END);
    fputc(c ^ 1, fp);
    fclose(fp);
}

static void truncate_file(const char *path) { cr_assert_eq(truncate(path, 5000), 0); }

static void bump_version(const char *path)
{
    FILE *fp = fopen(path, "r+b");
    uint8_t h[64];
    cr_assert_eq(fread(h, 64, 1, fp), 1u);
    uint32_t v = 7;
    memcpy(h + 8, &v, 4);
    uint64_t sum = loco_hash64(h, 56, 0);
    memcpy(h + 56, &sum, 8);
    fseek(fp, 0, SEEK_SET);
    fwrite(h, 64, 1, fp);
    fclose(fp);
}

static void break_magic(const char *path)
{
    FILE *fp = fopen(path, "r+b");
    fputc('X', fp);
    fclose(fp);
}

static void break_header(const char *path)
{
    FILE *fp = fopen(path, "r+b");
    fseek(fp, 24, SEEK_SET);
    fputc(0x55, fp);
    fclose(fp);
}

Test(data, corrupt_payload_refused, .init = make_dir, .fini = remove_dir)
{
    expect_refused(flip_payload_byte, LOCO_ERR_CHECKSUM, "token checksum mismatch");
}
Test(data, truncated_file_refused, .init = make_dir, .fini = remove_dir)
{
    expect_refused(truncate_file, LOCO_ERR_TRUNCATED, "truncated");
}
Test(data, wrong_version_refused_with_hint, .init = make_dir, .fini = remove_dir)
{
    expect_refused(bump_version, LOCO_ERR_VERSION, "version 7, this loco reads version 1");
}
Test(data, bad_magic_refused, .init = make_dir, .fini = remove_dir)
{
    expect_refused(break_magic, LOCO_ERR_FORMAT, "not a loco token file");
}
Test(data, corrupt_header_refused, .init = make_dir, .fini = remove_dir)
{
    expect_refused(break_header, LOCO_ERR_CHECKSUM, "header checksum");
}

Test(data, random_dataset_uses_large_vocab, .init = make_dir, .fini = remove_dir)
{
    char out[128];
    snprintf(out, sizeof out, "%s/out", g_dir);
    cr_assert_eq(loco_data_prepare_random(out, 50304, 100000, 5000, 3, NULL), LOCO_OK);
    loco_token_file train;
    open_split(&train, "train");
    cr_assert_eq(train.vocab, 50304u);
    cr_assert_eq(train.count, 100000u);
    uint16_t max = 0;
    for (uint64_t i = 0; i < train.count; i++) {
        max = train.tokens[i] > max ? train.tokens[i] : max;
    }
    cr_assert(max > 50000 && max < 50304, "max token %u", max);
    loco_token_file_close(&train);
}

Test(data, cli_failure_leaves_nothing_behind, .init = make_dir, .fini = remove_dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s data prepare --out %s/out /nonexistent/corpus 2>%s/err.txt",
             LOCO_BIN, g_dir, g_dir);
    int rc = system(cmd);
    cr_assert_eq(WEXITSTATUS(rc), 1);
    char path[256];
    snprintf(path, sizeof path, "%s/out", g_dir);
    cr_assert_neq(access(path, F_OK), 0, "output directory created on failure");
    snprintf(cmd, sizeof cmd, "grep -q 'input /nonexistent/corpus not found' %s/err.txt", g_dir);
    cr_assert_eq(system(cmd), 0, "error message does not name the missing input");
    snprintf(cmd, sizeof cmd, "%s data prepare --val-fraction 0.9 --out %s/out %s 2>/dev/null",
             LOCO_BIN, g_dir, g_dir);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s data bogus 2>/dev/null", LOCO_BIN);
    cr_assert_eq(WEXITSTATUS(system(cmd)), 2);
}

Test(data, bigram_baseline_matches_known_cases, .init = make_dir, .fini = remove_dir)
{
    /* Random tokens: no bigram structure, loss ~ log(V). */
    char out[128];
    snprintf(out, sizeof out, "%s/out", g_dir);
    cr_assert_eq(loco_data_prepare_random(out, 64, 400000, 50000, 9, NULL), LOCO_OK);
    loco_token_file train, val;
    open_split(&train, "train");
    open_split(&val, "val");
    double loss, k;
    cr_assert_eq(loco_bigram_val_loss(&train, &val, &loss, &k, NULL), LOCO_OK);
    cr_assert(fabs(loss - log(64.0)) < 0.02, "random tokens: %f vs log 64 = %f", loss, log(64.0));
    loco_token_file_close(&train);
    loco_token_file_close(&val);
    remove_dir();
    /* A periodic text "abcabc...": each byte determines the next, loss ~ 0. */
    make_dir();
    snprintf(out, sizeof out, "%s/out", g_dir);
    char src[256];
    snprintf(src, sizeof src, "%s/abc.txt", g_dir);
    size_t n = 30000;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++) {
        text[i] = (char)("abc\n"[i % 4]);
    }
    write_plain(src, text, n);
    free(text);
    const char *inputs[1] = {src};
    loco_prepare_params params = {.inputs = inputs, .n_inputs = 1, .out_dir = out,
                                  .val_fraction = 0.1};
    cr_assert_eq(loco_data_prepare(&params, NULL), LOCO_OK);
    open_split(&train, "train");
    open_split(&val, "val");
    cr_assert_eq(loco_bigram_val_loss(&train, &val, &loss, &k, NULL), LOCO_OK);
    cr_assert(loss < 0.01, "deterministic bigrams: loss %f", loss);
    loco_token_file_close(&train);
    loco_token_file_close(&val);
}
